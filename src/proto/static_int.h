/* Private to the static-file handler (src/proto/static_*.c): the handler's
 * state, what it knows about a file, and the calls the files make of each
 * other. Who does what: static_files.c the handler, its state and serving
 * an opened file; static_path.c turning a target into a file under the
 * root (decoding, normalising, openat2); static_fileinfo.c a file's MIME
 * type, ETag and Last-Modified; static_cache.c the file cache and its snapshots;
 * static_cond.c conditional requests (RFC 9110 section 13); static_ranges.c
 * Range and multipart/byteranges (section 14); static_listing.c directory
 * listings. */
#ifndef CSOCK_PROTO_STATIC_INT_H
#define CSOCK_PROTO_STATIC_INT_H

#include <stdint.h>
#include <sys/stat.h>

#include "csock/csock.h"

/* A decoded path longer than Linux's PATH_MAX (4096) could not be opened
 * anyway: such a target is a 414. */
#define PATH_MAX_DECODED 4096
/* The file cache (static_cache.c): 256 slots, direct-mapped by path hash
 * (no LRU to keep), filled lazily. A small file is held whole (at most
 * ~8.5 KiB a slot, ~2 MiB per loop): a site's hot small files (icons,
 * stylesheets, scripts) fit. A larger one keeps its open descriptor and
 * what its answer says of it, so serving it costs an fstat (the check
 * that it is unchanged) instead of an open (a path walk), an fstat and a
 * close. */
#define CACHE_SLOTS 256
#define CACHE_MAX_FILE 8192  /* files up to this size are cached whole (= SMALL_FILE) */
#define CACHE_PATH 240       /* longest cached path: the entry's header stays small */
/* A changed file is seen within this long: short enough that an edit shows
 * on the next reload, long enough to spare a busy file an open per request.
 * A cached descriptor goes at the first request after it expired: a file
 * deleted while the server is idle keeps its disk space until then. */
#define CACHE_TTL_MS 1000

/* "ETag: " + etag (< 48) + "Last-Modified: " + a date (29) + "Accept-Ranges:
 * bytes" + "Content-Type: " + the longest MIME type of our table (30), each
 * with its CRLF: 180 bytes at most. */
#define FIELDS_MAX 192

/* What an answer needs to know about a file, computed once per open (or
 * once per cache fill). `fields` holds the answer's fields about the file,
 * formatted once so a request copies them in one piece: the validators
 * (ETag, Last-Modified: the first vlen bytes, all a 304 or 412 carries),
 * then Accept-Ranges (up to alen) and Content-Type (up to flen). */
typedef struct finfo {
    uint64_t size;
    int64_t mtime;
    char etag[48];
    char lm[32];
    const char *mime;
    unsigned short vlen, alen, flen;
    char fields[FIELDS_MAX];
} finfo;

/* Snapshots (static_cache.c). A larger file, at its second full answer
 * (its first from the cache), is copied with that answer's head into a
 * memfd, or an unlinked file in the snapshot directory: [head][body]. The
 * next
 * answers with the same head (the same Date second, fields and
 * Connection; csock__http_prefix compares them byte for byte) leave in one
 * sendfile from offset 0, with no fstat: a snapshot cannot change or
 * shrink under an answer, and a changed file is seen within CACHE_TTL_MS,
 * as a small cached file is. A head sent on its own cost a 100 KB answer
 * 1.17x the CPU of one sendfile (bench/peers/http_floor.c, BENCHMARKS.md
 * session 33). A file on a disk file system, where the user allows the
 * file system work: sendfile reads its page cache in batches
 * (filemap_splice_read) where a memfd's looks each page up on its own
 * (shmem_file_splice_read), 3-4 us of a 100 KB answer's 35-40 (session
 * 34). Above SNAP_MAX_FILE the copy (about twice a second per busy
 * file, ten times at most) would cost more than the call it saves, and
 * memory. */
#define SNAP_MAX_FILE (256 * 1024)
/* Bytes of snapshots alive per handler (one per loop), those that answers
 * in flight still hold included: past it, answers go as before (head,
 * then the file), so slow readers holding old snapshots cannot make the
 * server's memory (or the snapshot directory's use) grow. */
#define SNAP_BUDGET (16u << 20)
/* The longest head kept: the fixed part (under 250 bytes) and the file's
 * fields (FIELDS_MAX), with room for a few more. */
#define SNAP_HEAD_MAX 640
/* A head that does not match builds a new snapshot at most this often per
 * file: the Date moves on once a second, but clients that differ (an
 * HTTP/1.0 one wants "Connection: keep-alive") must not make every answer
 * a copy. */
#define SNAP_RETRY_MS 100
/* A snapshot directory that refused one (full, a disk error) is left for
 * memfds this long, then tried again. */
#define SNAP_DIR_RETRY_MS 60000

/* What the snapshots of one handler use, shared with the snapshots (which
 * may outlive the handler in answers in flight): freed with the last. */
typedef struct snapbudget {
    size_t used;
    unsigned refs;
} snapbudget;

/* A larger file's descriptor, shared by its cache entry and the answers
 * sending from it (csock__static_fd_release gives a reference back). It
 * closes with the last reference: an entry forgotten (expired, replaced)
 * while answers are in flight leaves it to them. Sharing is safe because
 * every read of it names its offset (sendfile's, pread: the file position
 * never moves). One cache per loop, and a stream gives its file back on
 * its loop's thread: not atomic. A snapshot's (budget set) holds its head
 * (hlen bytes, also at offset 0 of fd); its body starts at offset hlen. */
typedef struct sharedfd {
    int fd;
    unsigned refs;
    snapbudget *budget; /* a snapshot's: it counts hlen + the body */
    size_t bytes;
    size_t hlen;
    char head[];
} sharedfd;

/* A file in the cache: a small one held in memory (no open, fstat, read or
 * close per request), a larger one by its descriptor or its snapshot. */
typedef struct centry {
    char path[CACHE_PATH];
    uint64_t loaded;          /* loop time of the fill */
    finfo fi;
    sharedfd *sfd;            /* a larger file's descriptor, else NULL and the data is here */
    long mtime_ns;            /* with fi.mtime and fi.size: checked before a file's descriptor is used */
    uint64_t snap_at;         /* loop time of the last try at a snapshot */
    size_t room;              /* what data[] can hold: CACHE_MAX_FILE or 0 */
    char data[];
} centry;

struct csock_http_static {
    int dirfd;          /* the root, O_PATH */
    char *root_real;    /* its real path, for the fallback check */
    size_t root_len;
    int list;           /* --list */
    char *index;        /* "index.html" */
    int no_openat2;     /* the kernel lacks openat2 (or CSOCK_HTTP_NO_OPENAT2 is set) */
    int shared;         /* a clone: dirfd, root_real and index belong to the original */
    centry *cache[CACHE_SLOTS]; /* NULL slots are empty; filled lazily */
    uint64_t swept;     /* loop time of the last pass closing expired descriptors */
    snapbudget *snaps;  /* made with the first snapshot */
    int no_snap;        /* memfd_create refused (seccomp, old kernel), or a file system sendfile cannot read: none */
    int snapdir;        /* opts->snapshot_dir (O_PATH), -1: snapshots are memfds */
    uint64_t snapdir_rest_until; /* loop time before which snapdir, having refused one, is not asked */
};

#define MAX_RANGES 32 /* more range-specs than this: the Range field is ignored */

typedef struct range {
    uint64_t first, last;
} range;

/* static_files.c */
void csock__static_send_status(csock_http_req *r, int status);

/* static_path.c */
int csock__static_normalise(const char *p, size_t n, char *out, size_t cap, int *dir_slash);
int csock__static_open_beneath(const csock_http_static *st, const char *rel, int flags);
int csock__static_errno_status(int err);

/* static_fileinfo.c */
void csock__static_file_info(finfo *fi, const struct stat *sb, const char *name);

/* static_cache.c */
uint32_t csock__static_path_hash(const char *p);
void csock__static_fd_release(void *sfd);
const centry *csock__static_cache_get(csock_http_static *st, const char *rel, uint64_t now);
const centry *csock__static_cache_put(csock_http_static *st, const char *rel, int fd,
                                      const struct stat *sb, uint64_t now);
void csock__static_cache_free(csock_http_static *st);
int csock__static_snap_due(const csock_http_static *st, const centry *e, uint64_t now);
int csock__static_tmpfile(int dir);
void csock__static_snapshot(csock_http_static *st, const centry *e, const char *head, size_t hlen,
                            uint64_t now);

/* static_cond.c: the request's fields that conditionals and ranges read */
typedef struct conds {
    csock_http_str if_match, if_unmodified_since, if_none_match, if_modified_since, range, if_range;
} conds;
void csock__static_conds(const csock_http_req *r, conds *cd);
int csock__static_preconditions(const conds *cd, const finfo *fi);
csock_http_str csock__static_wanted_range(const csock_http_req *r, const conds *cd, const finfo *fi);

/* static_ranges.c */
int csock__static_parse_ranges(csock_http_str v, uint64_t size, range *rs);
void csock__static_send_multipart(csock_http_req *r, int fd, sharedfd *sfd, off_t base,
                                  const char *data, const finfo *fi, const range *rs, int n);

/* static_listing.c */
void csock__static_send_listing(csock_http_req *r, int fd, const char *rel);

#endif
