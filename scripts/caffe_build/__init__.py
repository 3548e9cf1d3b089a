"""scripts/build_caffe.py's parts, by concern: common (errors, logging, the cache), source (the pinned sdist or a
user's tree), patches (scripts/patches/*.patch by option), config (Makefile.config: BLAS, CUDA, flags), wheels
(the build packaged as a wheel by the `wheel` tool) and relocate (auditwheel and the ELF checks of make wheel)."""
