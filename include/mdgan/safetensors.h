#ifndef MDGAN_SAFETENSORS_H
#define MDGAN_SAFETENSORS_H
// safetensors files: 8-byte little-endian header length N, N bytes of JSON header
// {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..],
//  "data_offsets": [begin, end]}, ...}, then the raw little-endian tensor bytes
// (offsets are relative to the start of that data area). Readable by PyTorch's
// `safetensors` package, and files it writes are readable here.

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_NDIM 8

typedef enum { ST_F32, ST_F64, ST_I64, ST_I32, ST_U8, ST_F16, ST_BF16 } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;                     // 0 = scalar (one element)
    int64_t shape[ST_MAX_NDIM];
    size_t nbytes;
    const unsigned char *data;    // points into StFile.buf (may be unaligned: memcpy it)
} StTensor;

typedef struct {
    char *path;
    unsigned char *buf;           // the whole file (mapped read-only when it is a regular file:
                                  // never write through it)
    size_t size;
    int mapped;
    int fd;                       // the mapped file's descriptor (large tensors are pread)
    StTensor *tensors;            // in header order
    int ntensors;
    void *meta;                   // json_t* of __metadata__ or NULL
} StFile;

// Reads and validates the whole file (header, dtypes, shapes, offsets, sizes,
// overlaps, metadata). On failure returns -1 with a message naming the path (and
// the tensor at fault) and leaves *f zeroed, so st_close is always safe.
int st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StTensor *st_get(const StFile *f, const char *name);   // NULL if absent, sets no error
size_t st_numel(const StTensor *t);                          // 1 for a scalar
const char *st_meta_get(const StFile *f, const char *key);   // NULL if absent
// Copies an F32 tensor into dst after checking presence, dtype and exact shape;
// errors name file and tensor, e.g. "FILE: tensor 'downConv2.weight' has shape
// [8, 4, 4, 4, 4], the model expects [16, 4, 4, 4, 4]".
int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *shape);

const char *st_dtype_name(StDtype dt);   // "F32", ...
size_t st_dtype_size(StDtype dt);        // bytes per element

// Writer: tensors are laid out in the order added; data is borrowed (not copied)
// until st_writer_save, which gathers it straight into the file.
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);            // NULL (with a message) when out of memory
// Rejects a duplicate or empty name, "__metadata__", ndim outside 0..8, a negative
// dim, and NULL data for a non-empty tensor.
int st_writer_add(StWriter *w, const char *name, StDtype dt, int ndim, const int64_t *shape,
                  const void *data);
int st_writer_add_f32(StWriter *w, const char *name, int ndim, const int64_t *shape,
                      const float *data);
// Sets a __metadata__ string (a key set twice keeps the last value).
int st_writer_meta(StWriter *w, const char *key, const char *value);
// Atomic and durable (fio_write_atomic): temporary file, fsync, rename, fsync folder.
// The header is padded with spaces so the data area starts at a multiple of 8.
int st_writer_save(StWriter *w, const char *path);
void st_writer_free(StWriter *w);

#endif
