/* libpng's adaptive row filtering (PNG 9.2-9.4), for the PNG writer of imaging/png.py.
 *
 * Why C: Orthanc's previews are compared by MD5, so each row must get the filter libpng picks
 * (least sum of |signed byte| over None, Sub, Up, Average, Paeth; the first on a tie). In numpy
 * that is some forty array operations per image: 0.1 ms of call overhead for a 64x64 preview,
 * 3 ms for a 512x512 CT. One pass in C, without the GIL, does both in a fraction of that. The
 * numpy path in png.py stays the reference and the fallback when this module is not built.
 *
 * Each row is filtered in one pass that writes the four filtered candidates into scratch rows
 * and adds up the five costs; the cheapest is then copied out. On x86-64 the pass works on 16
 * bytes at a time with SSE2 (part of the x86-64 baseline), or 32 with AVX2 where the processor
 * has it (chosen at run time); the scalar loop does the first pixel, the last bytes of a row and
 * everything on other processors. All paths give the same bytes (tests/unit/test_png_filter_c.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_SIMD 1
#endif

/* libpng's cost of a filtered byte: its absolute value read as a signed byte. */
static inline unsigned cost(unsigned char v)
{
    return (unsigned)abs((int)(signed char)v);
}

static inline int paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    int bc = pb <= pc ? b : c; /* selects rather than branches: the choice is unpredictable on noise */
    return (pa <= pb) & (pa <= pc) ? a : bc;
}

/* The scratch rows one row's candidates are written to: Sub, Up, Average, Paeth. */
typedef struct {
    unsigned char *f[5]; /* f[0] unused: None is the row itself */
} Candidates;

/* Bytes [from, to) of a row, filtered four ways, their costs added to sums (plain C; bytes
 * before `bpp` have no left neighbour: a = c = 0). Branch-free, so compilers can vectorise it. */
static void filter_scalar(const unsigned char *restrict row, const unsigned char *restrict prev, Py_ssize_t from,
                          Py_ssize_t to, int bpp, const Candidates *out, unsigned long long sums[5])
{
    unsigned long long s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    unsigned char *restrict f1 = out->f[1], *restrict f2 = out->f[2], *restrict f3 = out->f[3];
    unsigned char *restrict f4 = out->f[4];
    Py_ssize_t i = from;
    for (; i < to && i < bpp; i++) {
        int x = row[i], b = prev[i];
        f1[i] = (unsigned char)x, f2[i] = (unsigned char)(x - b), f3[i] = (unsigned char)(x - (b >> 1));
        f4[i] = (unsigned char)(x - b); /* Paeth of (0, b, 0) is b */
        s0 += cost((unsigned char)x), s1 += cost(f1[i]), s2 += cost(f2[i]), s3 += cost(f3[i]), s4 += cost(f4[i]);
    }
    for (; i < to; i++) {
        int x = row[i], b = prev[i], a = row[i - bpp], c = prev[i - bpp];
        unsigned char v1 = (unsigned char)(x - a), v2 = (unsigned char)(x - b);
        unsigned char v3 = (unsigned char)(x - ((a + b) >> 1)), v4 = (unsigned char)(x - paeth(a, b, c));
        f1[i] = v1, f2[i] = v2, f3[i] = v3, f4[i] = v4;
        s0 += cost((unsigned char)x), s1 += cost(v1), s2 += cost(v2), s3 += cost(v3), s4 += cost(v4);
    }
    sums[0] += s0, sums[1] += s1, sums[2] += s2, sums[3] += s3, sums[4] += s4;
}

#ifdef HAVE_X86_SIMD
/* The vector kernels, written once for SSE2 (V = 128 bits) and once for AVX2 (256 bits).
 * cost(v) = min(v, -v) as unsigned bytes (128 stays 128); psadbw adds 8 costs at a time.
 * floor((a + b) / 2) = pavgb(a, b) - ((a ^ b) & 1). Paeth's distances need 9 bits: they are
 * computed on 16-bit lanes (unpack against zero), the two choice masks packed back to bytes.
 * Unpack and pack work within 128-bit lanes in AVX2 alike, so the byte order comes back. */
#define KERNEL(NAME, ATTR, V, W, LOAD, STORE, SET1_8, ZERO, ADD64, SUB8, SUB16, AND, ANDNOT, OR, XOR, AVG8, MIN8,  \
               MAX16, GT16, UNLO, UNHI, PACKS, SAD)                                                              \
    ATTR static Py_ssize_t NAME(const unsigned char *row, const unsigned char *prev, Py_ssize_t from,             \
                                Py_ssize_t rowbytes, int bpp, const Candidates *out, unsigned long long sums[5])  \
    {                                                                                                            \
        const V zero = ZERO(), one = SET1_8(1);                                                                  \
        V acc0 = zero, acc1 = zero, acc2 = zero, acc3 = zero, acc4 = zero;                                       \
        Py_ssize_t i = from;                                                                                     \
        for (; i + W <= rowbytes; i += W) {                                                                      \
            V x = LOAD((const V *)(row + i)), a = LOAD((const V *)(row + i - bpp));                              \
            V b = LOAD((const V *)(prev + i)), c = LOAD((const V *)(prev + i - bpp));                            \
            V f1 = SUB8(x, a), f2 = SUB8(x, b);                                                                  \
            V f3 = SUB8(x, SUB8(AVG8(a, b), AND(XOR(a, b), one)));                                               \
            V al = UNLO(a, zero), ah = UNHI(a, zero), bl = UNLO(b, zero), bh = UNHI(b, zero);                    \
            V cl = UNLO(c, zero), ch = UNHI(c, zero);                                                            \
            V dal = SUB16(bl, cl), dah = SUB16(bh, ch); /* p - a */                                              \
            V dbl = SUB16(al, cl), dbh = SUB16(ah, ch); /* p - b */                                              \
            V dcl = ADD16(dal, dbl), dch = ADD16(dah, dbh);                                                      \
            V pal = MAX16(dal, SUB16(zero, dal)), pah = MAX16(dah, SUB16(zero, dah));                            \
            V pbl = MAX16(dbl, SUB16(zero, dbl)), pbh = MAX16(dbh, SUB16(zero, dbh));                            \
            V pcl = MAX16(dcl, SUB16(zero, dcl)), pch = MAX16(dch, SUB16(zero, dch));                            \
            V not_a = PACKS(OR(GT16(pal, pbl), GT16(pal, pcl)), OR(GT16(pah, pbh), GT16(pah, pch)));             \
            V not_b = PACKS(GT16(pbl, pcl), GT16(pbh, pch));                                                     \
            V bc = OR(ANDNOT(not_b, b), AND(not_b, c));                                                          \
            V f4 = SUB8(x, OR(ANDNOT(not_a, a), AND(not_a, bc)));                                                \
            STORE((V *)(out->f[1] + i), f1);                                                                     \
            STORE((V *)(out->f[2] + i), f2);                                                                     \
            STORE((V *)(out->f[3] + i), f3);                                                                     \
            STORE((V *)(out->f[4] + i), f4);                                                                     \
            acc0 = ADD64(acc0, SAD(MIN8(x, SUB8(zero, x)), zero));                                               \
            acc1 = ADD64(acc1, SAD(MIN8(f1, SUB8(zero, f1)), zero));                                             \
            acc2 = ADD64(acc2, SAD(MIN8(f2, SUB8(zero, f2)), zero));                                             \
            acc3 = ADD64(acc3, SAD(MIN8(f3, SUB8(zero, f3)), zero));                                             \
            acc4 = ADD64(acc4, SAD(MIN8(f4, SUB8(zero, f4)), zero));                                             \
        }                                                                                                        \
        V accs[5] = {acc0, acc1, acc2, acc3, acc4};                                                              \
        for (int k = 0; k < 5; k++) {                                                                            \
            unsigned long long lanes[W / 8];                                                                     \
            STORE((V *)lanes, accs[k]);                                                                          \
            for (int j = 0; j < W / 8; j++)                                                                      \
                sums[k] += lanes[j];                                                                             \
        }                                                                                                        \
        return i;                                                                                                \
    }

#define ADD16 _mm_add_epi16
KERNEL(filter_sse2, , __m128i, 16, _mm_loadu_si128, _mm_storeu_si128, _mm_set1_epi8, _mm_setzero_si128,
       _mm_add_epi64, _mm_sub_epi8, _mm_sub_epi16, _mm_and_si128, _mm_andnot_si128, _mm_or_si128, _mm_xor_si128,
       _mm_avg_epu8, _mm_min_epu8, _mm_max_epi16, _mm_cmpgt_epi16, _mm_unpacklo_epi8, _mm_unpackhi_epi8,
       _mm_packs_epi16, _mm_sad_epu8)
#undef ADD16
#define ADD16 _mm256_add_epi16
KERNEL(filter_avx2, __attribute__((target("avx2"))), __m256i, 32, _mm256_loadu_si256, _mm256_storeu_si256,
       _mm256_set1_epi8, _mm256_setzero_si256, _mm256_add_epi64, _mm256_sub_epi8, _mm256_sub_epi16,
       _mm256_and_si256, _mm256_andnot_si256, _mm256_or_si256, _mm256_xor_si256, _mm256_avg_epu8, _mm256_min_epu8,
       _mm256_max_epi16, _mm256_cmpgt_epi16, _mm256_unpacklo_epi8, _mm256_unpackhi_epi8, _mm256_packs_epi16,
       _mm256_sad_epu8)
#undef ADD16
#endif

/* Which kernel this module uses: 0 plain C, 1 SSE2, 2 AVX2 (set at import, changed by tests). */
static int kernel_level = 0;

static void filter_row(const unsigned char *row, const unsigned char *prev, Py_ssize_t rowbytes, int bpp,
                       const Candidates *out, unsigned long long sums[5])
{
    Py_ssize_t head = bpp < rowbytes ? bpp : rowbytes, i = head;
    memset(sums, 0, 5 * sizeof sums[0]);
    filter_scalar(row, prev, 0, head, bpp, out, sums); /* no byte to the left: a = c = 0 */
#ifdef HAVE_X86_SIMD
    if (kernel_level == 2)
        i = filter_avx2(row, prev, head, rowbytes, bpp, out, sums);
    else if (kernel_level == 1)
        i = filter_sse2(row, prev, head, rowbytes, bpp, out, sums);
#endif
    filter_scalar(row, prev, i, rowbytes, bpp, out, sums);
}

/* filter_rows(raw, height, rowbytes, bpp, allowed) -> bytes of height * (rowbytes + 1):
 * each row prefixed with the filter type libpng would choose among the `allowed` ones
 * (bit k set: filter k may be used). */
static PyObject *filter_rows(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    Py_ssize_t height, rowbytes;
    int bpp, allowed;
    if (!PyArg_ParseTuple(args, "y*nnii", &raw, &height, &rowbytes, &bpp, &allowed))
        return NULL;
    if (height < 0 || rowbytes < 0 || bpp < 1 || raw.len < height * rowbytes || (allowed & 31) == 0) {
        PyBuffer_Release(&raw);
        PyErr_SetString(PyExc_ValueError, "bad image geometry");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, height * (rowbytes + 1));
    unsigned char *scratch = calloc((size_t)rowbytes * 5 + 1, 1); /* a row of zeros, then 4 candidates */
    if (result == NULL || scratch == NULL) {
        Py_XDECREF(result);
        free(scratch);
        PyBuffer_Release(&raw);
        return result == NULL ? NULL : PyErr_NoMemory();
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *src = (const unsigned char *)raw.buf;
    Candidates out = {{NULL, scratch + rowbytes, scratch + 2 * rowbytes, scratch + 3 * rowbytes, scratch + 4 * rowbytes}};
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < height; y++) {
        const unsigned char *row = src + y * rowbytes;
        const unsigned char *prev = y > 0 ? row - rowbytes : scratch;
        unsigned long long sums[5];
        filter_row(row, prev, rowbytes, bpp, &out, sums);
        int chosen = -1;
        for (int type = 0; type < 5; type++) {
            if ((allowed & (1 << type)) && (chosen < 0 || sums[type] < sums[chosen]))
                chosen = type; /* strictly less: the first filter wins a tie, as in libpng */
        }
        unsigned char *line = dst + y * (rowbytes + 1);
        line[0] = (unsigned char)chosen;
        memcpy(line + 1, chosen == 0 ? row : out.f[chosen], (size_t)rowbytes);
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    PyBuffer_Release(&raw);
    return result;
}

static int best_level(void)
{
#ifdef HAVE_X86_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 2 : 1;
#else
    return 0;
#endif
}

/* set_kernel(level) -> the level now used: at most the best this processor has (for tests). */
static PyObject *set_kernel(PyObject *self, PyObject *args)
{
    int level;
    if (!PyArg_ParseTuple(args, "i", &level))
        return NULL;
    int best = best_level();
    kernel_level = level < 0 ? 0 : level > best ? best : level;
    return PyLong_FromLong(kernel_level);
}

static PyMethodDef methods[] = {
    {"filter_rows", filter_rows, METH_VARARGS, "libpng's adaptive filtering of PNG rows."},
    {"set_kernel", set_kernel, METH_VARARGS, "Use plain C (0), SSE2 (1) or AVX2 (2), at most what the CPU has."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pngfilter", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pngfilter(void)
{
    kernel_level = best_level();
    return PyModule_Create(&module);
}
