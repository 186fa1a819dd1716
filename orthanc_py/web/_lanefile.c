/* The HTTP fast lane's GET /instances/{id}/file in one C call: the index lookup (one prepared
 * statement on the lane's own read-only SQLite connection), the read of a small file that is
 * all in the page cache, and the whole HTTP answer in one bytes object.
 *
 * Why C: in Python the same steps cost ~23 us per first read (sqlite3's execute and row
 * objects, an Attachment, the storage layers, a second copy of the body to join it with its
 * head). Orthanc answers the request in ~40 us of CPU all told; the socket and the event loop
 * alone take ~28 us of ours. Here the lookup binds one text and reads three columns, the file
 * is opened relative to a descriptor of the storage root (no walk of the root's path), and the
 * body is read straight behind its head.
 *
 * The Python route (rest/instances.py) stays the reference: anything but the plain case (no
 * such instance, compressed attachment, file not cached, database busy) answers None, and the
 * Python route or aiohttp's handler answers. The GIL is kept: this runs on the event loop.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */
#endif
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef O_PATH
#define O_PATH 0
#endif

/* The start of CPython's sqlite3.Connection object (Modules/_sqlite/connection.h, 3.8 to
 * 3.13): the handle comes first. The constructor checks the handle it reads against the
 * database file it is told to expect before using it. */
typedef struct {
    PyObject_HEAD
    sqlite3 *db;
} ConnectionHead;

static const char LOOKUP[] =
    "SELECT r.level, a.uuid, a.compressed_size, a.compression FROM resources r "
    "JOIN attachments a ON a.resource_id = r.id AND a.content_type = ?2 WHERE r.public_id = ?1";

typedef struct {
    PyObject_HEAD
    PyObject *connection; /* kept alive while the statement exists */
    sqlite3_stmt *stmt;
    int root;             /* descriptor of the storage root */
    int level;            /* the instance level's number */
    int plain;            /* the number of "no compression" */
    Py_ssize_t max_size;  /* larger files are not read here */
} FileRoute;

static void route_release(FileRoute *self)
{
    if (self->stmt != NULL) {
        sqlite3_finalize(self->stmt);
        self->stmt = NULL;
    }
    if (self->root >= 0) {
        close(self->root);
        self->root = -1;
    }
    Py_CLEAR(self->connection);
}

static int route_init(FileRoute *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"connection", "database", "root", "content_type", "level", "plain", "max_size", NULL};
    PyObject *connection;
    const char *database, *root;
    int content_type, level, plain;
    Py_ssize_t max_size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oyyiiin:FileRoute", kwlist, &connection, &database, &root,
                                     &content_type, &level, &plain, &max_size))
        return -1;
    route_release(self);
    PyObject *cls = PyObject_GetAttrString(connection, "__class__");
    PyObject *name = cls == NULL ? NULL : PyObject_GetAttrString(cls, "__module__");
    Py_XDECREF(cls);
    if (name == NULL)
        return -1;
    int is_sqlite = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "sqlite3") == 0;
    Py_DECREF(name);
    if (!is_sqlite || Py_TYPE(connection)->tp_basicsize < (Py_ssize_t)sizeof(ConnectionHead)) {
        PyErr_SetString(PyExc_TypeError, "connection must be a sqlite3.Connection");
        return -1;
    }
    sqlite3 *db = ((ConnectionHead *)connection)->db;
    const char *file = db == NULL ? NULL : sqlite3_db_filename(db, "main");
    if (file == NULL || strcmp(file, database) != 0) {
        PyErr_SetString(PyExc_ValueError, "the connection's handle is not that of the expected database");
        return -1;
    }
    if (sqlite3_prepare_v3(db, LOOKUP, -1, SQLITE_PREPARE_PERSISTENT, &self->stmt, NULL) != SQLITE_OK ||
        sqlite3_bind_int(self->stmt, 2, content_type) != SQLITE_OK) {
        PyErr_Format(PyExc_ValueError, "cannot prepare the lookup: %s", sqlite3_errmsg(db));
        route_release(self);
        return -1;
    }
    self->root = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (self->root < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, root);
        route_release(self);
        return -1;
    }
    Py_INCREF(connection);
    self->connection = connection;
    self->level = level;
    self->plain = plain;
    self->max_size = max_size;
    return 0;
}

static PyObject *route_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FileRoute *self = (FileRoute *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->root = -1; /* 0 is a descriptor: never close one this object did not open */
    return (PyObject *)self;
}

static void route_dealloc(FileRoute *self)
{
    route_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(answer_doc,
"answer(public_id: bytes, tail: bytes) -> bytes | None\n\n"
"The whole HTTP answer to GET /instances/{public_id}/file: status line, Content-Type,\n"
"Content-Disposition, Content-Length, then `tail` (the rest of the head, its blank line\n"
"included), then the file. None when the instance is unknown, its file compressed, larger\n"
"than max_size, not all in the page cache, or the database busy: nothing waited.");

static PyObject *route_answer(FileRoute *self, PyObject *args)
{
    const char *public_id, *tail;
    Py_ssize_t id_len, tail_len;
    if (!PyArg_ParseTuple(args, "y#y#:answer", &public_id, &id_len, &tail, &tail_len))
        return NULL;
    if (self->stmt == NULL)
        Py_RETURN_NONE;
    sqlite3_stmt *stmt = self->stmt;
    char rel[80];
    char uuid[48];
    sqlite3_int64 size = -1;
    int found = 0;
    if (sqlite3_bind_text(stmt, 1, public_id, (int)id_len, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_int(stmt, 0) == self->level &&
        sqlite3_column_int(stmt, 3) == self->plain) {
        const unsigned char *text = sqlite3_column_text(stmt, 1);
        int n = sqlite3_column_bytes(stmt, 1);
        size = sqlite3_column_int64(stmt, 2);
        if (text != NULL && n >= 4 && n < (int)sizeof(uuid) && memchr(text, '/', (size_t)n) == NULL) {
            memcpy(uuid, text, (size_t)n);
            uuid[n] = '\0';
            found = 1;
        }
    }
    sqlite3_reset(stmt);        /* ends the read transaction at once */
    sqlite3_bind_null(stmt, 1); /* no pointer into the caller's bytes is kept */
    if (!found || size < 0 || size > self->max_size)
        Py_RETURN_NONE;
#if defined(RWF_NOWAIT)
    snprintf(rel, sizeof(rel), "%.2s/%.2s/%s", uuid, uuid + 2, uuid);
    int fd = openat(self->root, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        Py_RETURN_NONE;
    char head[160];
    int head_len = snprintf(head, sizeof(head),
                            "HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\n"
                            "Content-Disposition: filename=\"%s.dcm\"\r\nContent-Length: %lld",
                            uuid, (long long)size);
    if (head_len <= 0 || head_len >= (int)sizeof(head)) {
        close(fd);
        Py_RETURN_NONE;
    }
    Py_ssize_t body_at = head_len + tail_len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, body_at + (Py_ssize_t)size);
    if (out == NULL) {
        close(fd);
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    memcpy(dst, head, (size_t)head_len);
    memcpy(dst + head_len, tail, (size_t)tail_len);
    char extra; /* one byte more: a file longer than recorded is not served here */
    struct iovec iov[2] = {{dst + body_at, (size_t)size}, {&extra, 1}};
    ssize_t got = preadv2(fd, iov, 2, 0, RWF_NOWAIT);
    close(fd);
    if (got != (ssize_t)size) { /* EAGAIN (not all cached), EOPNOTSUPP, short or long file */
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
#else
    (void)rel;
    Py_RETURN_NONE;
#endif
}

PyDoc_STRVAR(close_doc, "close() -> None\n\nFinalize the statement (before its connection closes).");

static PyObject *route_close(FileRoute *self, PyObject *unused)
{
    route_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef route_methods[] = {
    {"answer", (PyCFunction)route_answer, METH_VARARGS, answer_doc},
    {"close", (PyCFunction)route_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(library_doc,
"library() -> str | None\n\n"
"The file of the SQLite library this module calls. The caller checks that it is the one\n"
"Python's sqlite3 module had loaded before: a handle is only valid in its own library.");

static PyObject *library(PyObject *self, PyObject *unused)
{
    Dl_info info;
    if (dladdr((void *)sqlite3_libversion, &info) == 0 || info.dli_fname == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(info.dli_fname);
}

static PyMethodDef module_methods[] = {
    {"library", library, METH_NOARGS, library_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FileRouteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "orthanc_py.web._lanefile.FileRoute",
    .tp_basicsize = sizeof(FileRoute),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("FileRoute(connection, database, root, content_type, level, plain, max_size)\n\n"
                        "GET /instances/{id}/file answered from `connection` (a sqlite3.Connection\n"
                        "open on the file `database`, used by this thread only) and the storage\n"
                        "folder `root` (Orthanc's layout: ab/cd/uuid)."),
    .tp_new = route_new,
    .tp_init = (initproc)route_init,
    .tp_dealloc = (destructor)route_dealloc,
    .tp_methods = route_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lanefile", "The fast lane's GET /instances/{id}/file in one C call.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__lanefile(void)
{
    if (PyType_Ready(&FileRouteType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FileRouteType);
    if (PyModule_AddObject(m, "FileRoute", (PyObject *)&FileRouteType) < 0) {
        Py_DECREF(&FileRouteType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
