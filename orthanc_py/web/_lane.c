/* Routes of the HTTP fast lane in one C call each, on the lane's own read-only SQLite connection.
 *
 * FileRoute, GET /instances/{id}/file: the index lookup (one prepared statement), the read of a
 * small file that is all in the page cache, and the whole HTTP answer in one bytes object.
 * ResourceRoute, GET /{patients,studies,instances}/{id}: the JSON body from the index's summary
 * statement (see its section below).
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

/* The handle of `connection` (a sqlite3.Connection) when it is open on the file `database`;
 * NULL with an exception set otherwise. */
static sqlite3 *connection_handle(PyObject *connection, const char *database)
{
    PyObject *cls = PyObject_GetAttrString(connection, "__class__");
    PyObject *name = cls == NULL ? NULL : PyObject_GetAttrString(cls, "__module__");
    Py_XDECREF(cls);
    if (name == NULL)
        return NULL;
    int is_sqlite = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "sqlite3") == 0;
    Py_DECREF(name);
    if (!is_sqlite || Py_TYPE(connection)->tp_basicsize < (Py_ssize_t)sizeof(ConnectionHead)) {
        PyErr_SetString(PyExc_TypeError, "connection must be a sqlite3.Connection");
        return NULL;
    }
    sqlite3 *db = ((ConnectionHead *)connection)->db;
    const char *file = db == NULL ? NULL : sqlite3_db_filename(db, "main");
    if (file == NULL || strcmp(file, database) != 0) {
        PyErr_SetString(PyExc_ValueError, "the connection's handle is not that of the expected database");
        return NULL;
    }
    return db;
}

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
    char head[2][128];    /* the status line and headers before the file's UUID, and after it */
    size_t head_len[2];
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
    static char *kwlist[] = {"connection", "database", "root", "content_type", "level", "plain", "max_size",
                             "before", "after", NULL};
    PyObject *connection;
    const char *database, *root;
    int content_type, level, plain;
    Py_ssize_t max_size, before_len, after_len;
    const char *before, *after;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oyyiiiny#y#:FileRoute", kwlist, &connection, &database, &root,
                                     &content_type, &level, &plain, &max_size, &before, &before_len, &after,
                                     &after_len))
        return -1;
    if (before_len >= (Py_ssize_t)sizeof(self->head[0]) || after_len >= (Py_ssize_t)sizeof(self->head[1])) {
        PyErr_SetString(PyExc_ValueError, "the head around the UUID is too long");
        return -1;
    }
    route_release(self);
    sqlite3 *db = connection_handle(connection, database);
    if (db == NULL)
        return -1;
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
    memcpy(self->head[0], before, (size_t)before_len);
    self->head_len[0] = (size_t)before_len;
    memcpy(self->head[1], after, (size_t)after_len);
    self->head_len[1] = (size_t)after_len;
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
"The whole HTTP answer to GET /instances/{public_id}/file: `before`, the file's UUID, `after`\n"
"(the status line and headers the caller gave), Content-Length, then `tail` (the rest of the\n"
"head, its blank line included), then the file. None when the instance is unknown, its file compressed, larger\n"
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
    char head[400];
    int head_len = snprintf(head, sizeof(head), "%.*s%s%.*sContent-Length: %lld", (int)self->head_len[0],
                            self->head[0], uuid, (int)self->head_len[1], self->head[1], (long long)size);
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


/* ------------------------------------------------------------------------------------------
 * GET /{patients,studies,instances}/{id}: the JSON of rest/render.py's _full_json (default
 * "human" format, no extra main sequences) as json_bytes writes it (orjson, 2-space indent,
 * sorted keys, a final newline), from the one row of the index's summary statement
 * (index/transaction.py: _summary_sql, given by the caller). The JSON string tokens of the main
 * tags are copied as they are stored: the index writes them with orjson, and a token holding
 * anything orjson would not have written (another escape) sends the request to Python.
 */

typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n)
            cap *= 2;
        char *p = PyMem_Realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

#define PUT(b, lit) buf_put((b), "" lit, sizeof(lit) - 1) /* literals only ("" refuses others) */

static void buf_str(Buf *b, const char *s, size_t n) /* a string known to need no escape */
{
    PUT(b, "\"");
    buf_put(b, s, n);
    PUT(b, "\"");
}

static void buf_int(Buf *b, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    buf_put(b, tmp, (size_t)n);
}

/* Whether `s` can be written between quotes as it is (what orjson writes unescaped). */
static int plain_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static int hexlower(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* Length of the JSON string token at s (s[0] == '"'), or 0 when malformed or holding an escape
 * orjson does not write. */
static size_t string_token(const char *s, const char *end)
{
    const char *p = s + 1;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return (size_t)(p + 1 - s);
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (p + 1 >= end)
                return 0;
            char e = p[1];
            if (e == '"' || e == '\\' || e == 'n' || e == 'r' || e == 't' || e == 'b' || e == 'f') {
                p += 2;
                continue;
            }
            if (e == 'u' && end - p >= 6 && p[2] == '0' && p[3] == '0' && (p[4] == '0' || p[4] == '1') &&
                hexlower(p[5])) {
                int v = (p[4] - '0') * 16 + (p[5] <= '9' ? p[5] - '0' : p[5] - 'a' + 10);
                if (v == 8 || v == 9 || v == 10 || v == 12 || v == 13)
                    return 0; /* orjson writes these short */
                p += 6;
                continue;
            }
            return 0;
        }
        p++;
    }
    return 0;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

typedef struct {
    const char *name; /* NULL: left out of the answer */
    size_t name_len;
    const char *value; /* the JSON token, quotes included */
    size_t value_len;
    int patient; /* a study's copy of a patient tag */
} Entry;

typedef struct {
    unsigned int tag;
    int where; /* 1: main tags, 2: the patient's (of a study), 3: both */
    PyObject *name; /* bytes */
} Name;

static int compare_names(const void *a, const void *b)
{
    unsigned int x = ((const Name *)a)->tag, y = ((const Name *)b)->tag;
    return x < y ? -1 : x > y;
}

static int compare_entries(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len < y->name_len ? -1 : x->name_len > y->name_len);
}

typedef struct {
    PyObject_HEAD
    PyObject *connection;
    sqlite3_stmt *stmt;
    int level; /* 1 patient, 2 study, 4 instance */
    Name *names;
    Py_ssize_t n_names;
} ResourceRoute;

static void resource_release(ResourceRoute *self)
{
    if (self->stmt != NULL) {
        sqlite3_finalize(self->stmt);
        self->stmt = NULL;
    }
    for (Py_ssize_t i = 0; i < self->n_names; i++)
        Py_XDECREF(self->names[i].name);
    PyMem_Free(self->names);
    self->names = NULL;
    self->n_names = 0;
    Py_CLEAR(self->connection);
}

static int resource_init(ResourceRoute *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"connection", "database", "statement", "level", "names", NULL};
    PyObject *connection, *names;
    const char *database, *statement;
    int level;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OyyiO!:ResourceRoute", kwlist, &connection, &database, &statement,
                                     &level, &PyDict_Type, &names))
        return -1;
    resource_release(self);
    if (level != 1 && level != 2 && level != 4) {
        PyErr_SetString(PyExc_ValueError, "level must be 1 (patient), 2 (study) or 4 (instance)");
        return -1;
    }
    sqlite3 *db = connection_handle(connection, database);
    if (db == NULL)
        return -1;
    Py_ssize_t n = PyDict_Size(names), i = 0, pos = 0;
    self->names = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Name));
    if (self->names == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *key, *value;
    while (PyDict_Next(names, &pos, &key, &value)) {
        PyObject *name;
        int where;
        if (!PyArg_ParseTuple(value, "Si:names", &name, &where))
            goto fail;
        unsigned long tag = PyLong_AsUnsignedLong(key);
        if (PyErr_Occurred())
            goto fail;
        if (!plain_text(PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name))) {
            PyErr_SetString(PyExc_ValueError, "a tag name that JSON would escape");
            goto fail;
        }
        Py_INCREF(name);
        self->names[i].tag = (unsigned int)tag;
        self->names[i].where = where;
        self->names[i].name = name;
        self->n_names = ++i;
    }
    qsort(self->names, (size_t)self->n_names, sizeof(Name), compare_names);
    if (sqlite3_prepare_v3(db, statement, -1, SQLITE_PREPARE_PERSISTENT, &self->stmt, NULL) != SQLITE_OK) {
        PyErr_Format(PyExc_ValueError, "cannot prepare the summary: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (sqlite3_column_count(self->stmt) != 12) {
        PyErr_SetString(PyExc_ValueError, "the summary statement must have 12 columns");
        goto fail;
    }
    Py_INCREF(connection);
    self->connection = connection;
    self->level = level;
    return 0;
fail:
    resource_release(self);
    return -1;
}

static void resource_dealloc(ResourceRoute *self)
{
    resource_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static const Name *find_name(const ResourceRoute *self, unsigned int tag)
{
    Py_ssize_t lo = 0, hi = self->n_names;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        unsigned int t = self->names[mid].tag;
        if (t == tag)
            return &self->names[mid];
        if (t < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

#define MAX_ENTRIES 256

/* The main tags of a row ([[tag,"value"],...]) into `out`; the count, or -1 (to Python). */
static int parse_tags(const ResourceRoute *self, const char *s, size_t len, Entry *out)
{
    const char *p = s, *end = s + len;
    int n = 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '[')
        return -1;
    p = skip_ws(p, end);
    if (p < end && *p == ']')
        return 0;
    for (;;) {
        if (n >= MAX_ENTRIES)
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p++ != '[')
            return -1;
        p = skip_ws(p, end);
        unsigned long long tag = 0;
        const char *digits = p;
        while (p < end && *p >= '0' && *p <= '9' && p - digits < 12)
            tag = tag * 10 + (unsigned)(*p++ - '0');
        if (p == digits || tag > 0xffffffffULL)
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ',')
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return -1;
        size_t token = string_token(p, end);
        if (token == 0)
            return -1;
        const Name *name = find_name(self, (unsigned int)tag);
        if (name == NULL)
            return -1; /* a tag without a known name: Python names it */
        Entry *e = &out[n++];
        e->value = p;
        e->value_len = token;
        e->name = PyBytes_AS_STRING(name->name);
        e->name_len = (size_t)PyBytes_GET_SIZE(name->name);
        e->patient = name->where;
        p = skip_ws(p + token, end);
        if (p >= end || *p++ != ']')
            return -1;
        p = skip_ws(p, end);
        if (p >= end)
            return -1;
        if (*p == ']')
            break;
        if (*p++ != ',')
            return -1;
    }
    p = skip_ws(p + 1, end);
    return p == end ? n : -1;
}

/* One object of main tags at indent 2 ("Key": {...}), the entries for which where & mask. */
static void put_tags(Buf *b, const char *key, Entry *entries, int n, int mask)
{
    Entry chosen[MAX_ENTRIES];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (entries[i].patient & mask)
            chosen[k++] = entries[i];
    PUT(b, "  \"");
    buf_put(b, key, strlen(key));
    if (k == 0) {
        PUT(b, "\": {},\n");
        return;
    }
    PUT(b, "\": {\n");
    qsort(chosen, (size_t)k, sizeof(Entry), compare_entries);
    for (int i = 0; i < k; i++) {
        if (i > 0 && compare_entries(&chosen[i - 1], &chosen[i]) == 0)
            b->failed = 1; /* two tags of one name: Python's dict keeps the last */
        PUT(b, "    \"");
        buf_put(b, chosen[i].name, chosen[i].name_len);
        PUT(b, "\": ");
        buf_put(b, chosen[i].value, chosen[i].value_len);
        if (i + 1 < k)
            PUT(b, ",\n");
        else
            PUT(b, "\n");
    }
    PUT(b, "  },\n");
}

/* A list of plain strings at indent 2 ("Key": [...]) from `s` split at `sep` (or a JSON array
 * of plain strings when sep is 0, sorted); 0 when an item is not plain. */
typedef struct {
    const char *s;
    size_t n;
} Span;

static int compare_spans(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->n < y->n ? -1 : x->n > y->n);
}

static int put_list(Buf *b, const char *key, const char *s, size_t len, int json)
{
    Span items[MAX_ENTRIES];
    int k = 0;
    const char *p = s, *end = s + len;
    if (json) {
        p = skip_ws(p, end);
        if (p >= end || *p++ != '[')
            return 0;
        p = skip_ws(p, end);
        while (p < end && *p != ']') {
            if (*p != '"' || k >= MAX_ENTRIES)
                return 0;
            const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
            if (q == NULL)
                return 0;
            items[k].s = p + 1;
            items[k].n = (size_t)(q - p - 1);
            if (!plain_text(items[k].s, items[k].n))
                return 0;
            k++;
            p = skip_ws(q + 1, end);
            if (p < end && *p == ',')
                p = skip_ws(p + 1, end);
        }
        if (p >= end)
            return 0;
        qsort(items, (size_t)k, sizeof(Span), compare_spans);
    } else if (len > 0) {
        while (p <= end) {
            const char *q = memchr(p, ',', (size_t)(end - p));
            if (q == NULL)
                q = end;
            if (k >= MAX_ENTRIES)
                return 0;
            items[k].s = p;
            items[k].n = (size_t)(q - p);
            if (!plain_text(items[k].s, items[k].n))
                return 0;
            k++;
            p = q + 1;
        }
    }
    PUT(b, "  \"");
    buf_put(b, key, strlen(key));
    if (k == 0) {
        PUT(b, "\": [],\n");
        return 1;
    }
    PUT(b, "\": [\n");
    for (int i = 0; i < k; i++) {
        PUT(b, "    \"");
        buf_put(b, items[i].s, items[i].n);
        if (i + 1 < k)
            PUT(b, "\",\n");
        else
            PUT(b, "\"\n");
    }
    PUT(b, "  ],\n");
    return 1;
}

#define N_META 8
typedef struct {
    Span value[N_META]; /* by metadata type 1..7 (0 unused); s == NULL: absent */
} Meta;

/* The metadata object of the row ({"7":"...",...}, SQLite's json_group_object) into `m`;
 * 0 when it holds a type above 7 or a value that is not plain. */
static int parse_meta(const char *s, size_t len, Meta *m)
{
    memset(m, 0, sizeof(*m));
    const char *p = s, *end = s + len;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = skip_ws(p, end);
    while (p < end && *p != '}') {
        if (*p++ != '"')
            return 0;
        int type = 0;
        const char *digits = p;
        while (p < end && *p >= '0' && *p <= '9' && p - digits < 3)
            type = type * 10 + (*p++ - '0');
        if (p == digits || p >= end || *p++ != '"' || type < 1 || type >= N_META)
            return 0;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return 0;
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return 0;
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (q == NULL || !plain_text(p + 1, (size_t)(q - p - 1)))
            return 0;
        m->value[type].s = p + 1;
        m->value[type].n = (size_t)(q - p - 1);
        p = skip_ws(q + 1, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    return p < end;
}

/* as_int (model/dicomfile.py) of plain ASCII: 1 and *v, 0 (None), -1 (to Python). */
static int meta_int(Span v, long long *out)
{
    if (v.s == NULL)
        return 0;
    const char *p = v.s, *end = v.s + v.n;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r' ||
                       end[-1] == '\v' || end[-1] == '\f'))
        end--;
    int negative = 0;
    if (p < end && (*p == '+' || *p == '-'))
        negative = *p++ == '-';
    if (p == end || end - p > 18)
        return -1;
    long long value = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        value = value * 10 + (*p - '0');
    }
    *out = negative ? -value : value;
    return 1;
}

static void put_meta_string(Buf *b, const char *key, Span v)
{
    PUT(b, "  \"");
    buf_put(b, key, strlen(key));
    PUT(b, "\": ");
    if (v.s == NULL)
        PUT(b, "null");
    else
        buf_str(b, v.s, v.n);
    PUT(b, ",\n");
}

static void put_derived(Buf *b, const char *key, Span v) /* only when present */
{
    if (v.s != NULL)
        put_meta_string(b, key, v);
}

enum { M_INDEX = 1, M_MODIFIED = 5, M_ANONYMIZED = 6, M_LAST_UPDATE = 7 };

PyDoc_STRVAR(render_doc,
"render(public_id: bytes, stable: bool) -> bytes | None\n\n"
"The JSON of GET /{level}/{public_id} (IsStable as given), or None: unknown, another level, or\n"
"anything this renderer does not write as Python would (then Python renders it).");

static PyObject *resource_render(ResourceRoute *self, PyObject *args)
{
    const char *public_id;
    Py_ssize_t id_len;
    int stable;
    if (!PyArg_ParseTuple(args, "y#p:render", &public_id, &id_len, &stable))
        return NULL;
    sqlite3_stmt *stmt = self->stmt;
    if (stmt == NULL)
        Py_RETURN_NONE;
    Buf b = {NULL, 0, 0, 0};
    int ok = 0;
    if (sqlite3_bind_text(stmt, 1, public_id, (int)id_len, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(stmt) != SQLITE_ROW || sqlite3_column_int(stmt, 1) != self->level)
        goto done;
    const char *pub = (const char *)sqlite3_column_text(stmt, 2);
    size_t pub_n = (size_t)sqlite3_column_bytes(stmt, 2);
    const char *parent = (const char *)sqlite3_column_text(stmt, 4);
    size_t parent_n = (size_t)sqlite3_column_bytes(stmt, 4);
    const char *tags = (const char *)sqlite3_column_blob(stmt, 5);
    size_t tags_n = (size_t)sqlite3_column_bytes(stmt, 5);
    const char *kids = (const char *)sqlite3_column_text(stmt, 6);
    size_t kids_n = (size_t)sqlite3_column_bytes(stmt, 6);
    const char *meta = (const char *)sqlite3_column_text(stmt, 7);
    size_t meta_n = (size_t)sqlite3_column_bytes(stmt, 7);
    const char *labels = (const char *)sqlite3_column_text(stmt, 8);
    size_t labels_n = (size_t)sqlite3_column_bytes(stmt, 8);
    if (pub == NULL || !plain_text(pub, pub_n) || (parent != NULL && !plain_text(parent, parent_n)))
        goto done;
    Entry entries[MAX_ENTRIES];
    int n = tags == NULL ? 0 : parse_tags(self, tags, tags_n, entries);
    Meta m;
    if (n < 0 || (meta != NULL && !parse_meta(meta, meta_n, &m)))
        goto done;
    if (meta == NULL)
        memset(&m, 0, sizeof(m));
    int level = self->level;
    PUT(&b, "{\n");
    put_derived(&b, "AnonymizedFrom", m.value[M_ANONYMIZED]);
    if (level == 4) {
        if (sqlite3_column_type(stmt, 9) == SQLITE_NULL) {
            PUT(&b, "  \"FileSize\": null,\n  \"FileUuid\": null,\n");
        } else {
            const char *uuid = (const char *)sqlite3_column_text(stmt, 9);
            size_t uuid_n = (size_t)sqlite3_column_bytes(stmt, 9);
            if (uuid == NULL || !plain_text(uuid, uuid_n) || sqlite3_column_type(stmt, 10) != SQLITE_INTEGER)
                goto done;
            PUT(&b, "  \"FileSize\": ");
            buf_int(&b, sqlite3_column_int64(stmt, 10));
            PUT(&b, ",\n  \"FileUuid\": ");
            buf_str(&b, uuid, uuid_n);
            PUT(&b, ",\n");
        }
    }
    PUT(&b, "  \"ID\": ");
    buf_str(&b, pub, pub_n);
    PUT(&b, ",\n");
    if (level == 4) {
        long long index;
        int has = meta_int(m.value[M_INDEX], &index);
        if (has < 0)
            goto done;
        PUT(&b, "  \"IndexInSeries\": ");
        if (has)
            buf_int(&b, index);
        else
            PUT(&b, "null");
        PUT(&b, ",\n");
    } else {
        if (level == 1) {
            if (sqlite3_column_int(stmt, 11))
                PUT(&b, "  \"IsProtected\": true,\n");
            else
                PUT(&b, "  \"IsProtected\": false,\n");
        }
        if (stable)
            PUT(&b, "  \"IsStable\": true,\n");
        else
            PUT(&b, "  \"IsStable\": false,\n");
    }
    if (!put_list(&b, "Labels", labels ? labels : "[]", labels ? labels_n : 2, 1))
        goto done;
    if (level != 4)
        put_meta_string(&b, "LastUpdate", m.value[M_LAST_UPDATE]);
    put_tags(&b, "MainDicomTags", entries, n, 1);
    put_derived(&b, "ModifiedFrom", m.value[M_MODIFIED]);
    if (level != 1) {
        if (level == 2)
            PUT(&b, "  \"ParentPatient\": ");
        else
            PUT(&b, "  \"ParentSeries\": ");
        if (parent == NULL)
            PUT(&b, "null");
        else
            buf_str(&b, parent, parent_n);
        PUT(&b, ",\n");
    }
    if (level == 2)
        put_tags(&b, "PatientMainDicomTags", entries, n, 2);
    if (level != 4 && !put_list(&b, level == 1 ? "Studies" : "Series", kids ? kids : "", kids ? kids_n : 0, 0))
        goto done;
    if (level == 1)
        PUT(&b, "  \"Type\": \"Patient\"\n}\n");
    else if (level == 2)
        PUT(&b, "  \"Type\": \"Study\"\n}\n");
    else
        PUT(&b, "  \"Type\": \"Instance\"\n}\n");
    ok = !b.failed;
done:
    sqlite3_reset(stmt);
    sqlite3_bind_null(stmt, 1);
    PyObject *out = NULL;
    if (ok)
        out = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.n);
    PyMem_Free(b.p);
    if (ok)
        return out;
    Py_RETURN_NONE;
}

static PyObject *resource_close(ResourceRoute *self, PyObject *unused)
{
    resource_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef resource_methods[] = {
    {"render", (PyCFunction)resource_render, METH_VARARGS, render_doc},
    {"close", (PyCFunction)resource_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ResourceRouteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "orthanc_py.web._lane.ResourceRoute",
    .tp_basicsize = sizeof(ResourceRoute),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("ResourceRoute(connection, database, statement, level, names)\n\n"
                        "GET /{level}/{id} rendered from the summary `statement` (12 columns) on\n"
                        "`connection` (used by this thread only); `names`: tag -> (name, 1 main,\n"
                        "2 patient's, 3 both)."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)resource_init,
    .tp_dealloc = (destructor)resource_dealloc,
    .tp_methods = resource_methods,
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
    .tp_name = "orthanc_py.web._lane.FileRoute",
    .tp_basicsize = sizeof(FileRoute),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("FileRoute(connection, database, root, content_type, level, plain, max_size, before, after)\n\n"
                        "GET /instances/{id}/file answered from `connection` (a sqlite3.Connection\n"
                        "open on the file `database`, used by this thread only) and the storage\n"
                        "folder `root` (Orthanc's layout: ab/cd/uuid)."),
    .tp_new = route_new,
    .tp_init = (initproc)route_init,
    .tp_dealloc = (destructor)route_dealloc,
    .tp_methods = route_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lane", "Routes of the HTTP fast lane in one C call each.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__lane(void)
{
    if (PyType_Ready(&FileRouteType) < 0 || PyType_Ready(&ResourceRouteType) < 0)
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
    Py_INCREF(&ResourceRouteType);
    if (PyModule_AddObject(m, "ResourceRoute", (PyObject *)&ResourceRouteType) < 0) {
        Py_DECREF(&ResourceRouteType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
