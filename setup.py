"""Only the C extension lives here (setup.cfg cannot declare one); all metadata is in setup.cfg.

`_fastio` writes a storage file in one release of the GIL (see its source). It is optional: where
no C compiler is available the build goes on and the storage uses its pure-Python path."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("orthanc_py.storage._fastio", ["orthanc_py/storage/_fastio.c"], optional=True)])
