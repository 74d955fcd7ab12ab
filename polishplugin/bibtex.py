# -*- coding: utf-8 -*-
"""
@article{Zivanov2019,
title = "A Bayesian approach to beam-induced motion correction in cryo-EM single-particle analysis",
journal = "IUCrJ",
volume = "6",
pages = "5--17",
year = "2019",
doi = "http://dx.doi.org/10.1107/S205225251801463X",
author = "Zivanov, J. and Nakane, T. and Scheres, S. H. W."
}

@article{Scheres2012,
title = "RELION: implementation of a Bayesian approach to cryo-EM structure determination",
journal = "J. Struct. Biol.",
volume = "180",
pages = "519--530",
year = "2012",
doi = "http://dx.doi.org/10.1016/j.jsb.2012.09.006",
author = "Scheres, S. H. W."
}

@article{Scheres2012b,
title = "Prevention of overfitting in cryo-EM structure determination",
journal = "Nat. Methods",
volume = "9",
pages = "853--854",
year = "2012",
doi = "http://dx.doi.org/10.1038/nmeth.2115",
author = "Scheres, S. H. W. and Chen, S."
}

@article{Chen2013,
title = "High-resolution noise substitution to measure overfitting and validate resolution in 3D structure determination by single particle electron cryomicroscopy",
journal = "Ultramicroscopy",
volume = "135",
pages = "24--35",
year = "2013",
doi = "http://dx.doi.org/10.1016/j.ultramic.2013.06.004",
author = "Chen, S. and McMullan, G. and Faruqi, A. R. and Murshudov, G. N. and Short, J. M. and Scheres, S. H. W. and Henderson, R."
}

@article{Rosenthal2003,
title = "Optimal determination of particle orientation, absolute hand, and contrast loss in single-particle electron cryomicroscopy",
journal = "J. Mol. Biol.",
volume = "333",
pages = "721--745",
year = "2003",
doi = "http://dx.doi.org/10.1016/j.jmb.2003.07.013",
author = "Rosenthal, P. B. and Henderson, R."
}

@article{Grant2015,
title = "Measuring the optimal exposure for single particle cryo-EM using a 2.6 A reconstruction of rotavirus VP6",
journal = "eLife",
volume = "4",
pages = "e06980",
year = "2015",
doi = "http://dx.doi.org/10.7554/eLife.06980",
author = "Grant, T. and Grigorieff, N."
}

@article{Kucukelbir2014,
title = "Quantifying the local resolution of cryo-EM density maps",
journal = "Nat. Methods",
volume = "11",
pages = "63--65",
year = "2014",
doi = "http://dx.doi.org/10.1038/nmeth.2727",
author = "Kucukelbir, A. and Sigworth, F. J. and Tagare, H. D."
}
"""
