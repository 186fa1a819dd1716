"""Only the C extensions live here (setup.cfg cannot declare one); all metadata is in setup.cfg.

`_fastio` writes a storage file in one release of the GIL; `_pngfilter` filters PNG rows as
libpng does; `_lane` answers the fast lane's file and resource reads in one call (it needs
SQLite's headers, Debian's libsqlite3-dev). All are optional: where no C compiler is available the build
goes on and the pure-Python paths are used."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("orthanc_py.storage._fastio", ["orthanc_py/storage/_fastio.c"], optional=True),
        Extension("orthanc_py.imaging._pngfilter", ["orthanc_py/imaging/_pngfilter.c"], optional=True),
        Extension("orthanc_py.web._lane", ["orthanc_py/web/_lane.c"], libraries=["sqlite3"], optional=True),
    ]
)
