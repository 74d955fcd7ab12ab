"""Every figure of the plugin (matplotlib, Agg-safe, no Scipion): programs draw logfile.pdf pages and
PNGs with it, viewers show the same figures inside Scipion."""
