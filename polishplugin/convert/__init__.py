"""Scipion objects <-> the tables of :mod:`polishplugin.io` (SetOfParticles, SetOfMovies, Volume
with half maps, FSC).  The only file-format code here is the mapping to Scipion's objects; the
files themselves are read and written by ``polishplugin.io``."""
