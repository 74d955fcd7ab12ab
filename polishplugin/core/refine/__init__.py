"""3D auto-refine numerics (RELION ``relion_refine --auto_refine``): sampling, E-step, M-step pieces.

``sampling``   HEALPix orientation grids, symmetry reduction, oversampling children, local searches.
``fourier3d``  the pixel-list front end to the package's one padded Fourier grid (``core.projector``):
               projection and back-projection of selected Fourier pixels, symmetrisation and
               regularised reconstruction.
``estep``      squared differences as dense matrix products, posterior weights, significant samples.
``mstep``      the M-step besides the reconstruction: noise spectrum, offsets' sigma, norm and scale
               corrections, solvent-corrected FSC, low-resolution join of the half sets.
``schedule``   resolution, image size, auto-sampling and convergence bookkeeping.
"""
