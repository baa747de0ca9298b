/* listen --ssl (or tls://) without --cert: as ncat, a temporary self-signed
 * certificate is made at start-up and its SHA-256 fingerprint printed on
 * stderr, so that a client can check it out of band. The key and the
 * certificate never touch the disk: they are PEM in a memory file that the
 * TLS context reads by its /proc/self/fd path. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/netcat.h"

#define EPHEMERAL_DAYS 365

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    unsigned char serial[8];
    BIGNUM *bn = NULL;
    int ok = name != NULL;
    if (ok) {
        if (getentropy(serial, sizeof serial) < 0) memset(serial, 1, sizeof serial);
        serial[0] &= 0x7f; /* a positive serial */
        bn = BN_bin2bn(serial, sizeof serial, NULL);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_set_version(x, 2) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 60L * 60 * 24 * EPHEMERAL_DAYS) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"csock",
                                        -1, -1, 0) &&
             X509_set_issuer_name(x, name) && X509_set_pubkey(x, key) &&
             X509_sign(x, key, EVP_sha256());
        BN_free(bn);
    }
    if (!ok) X509_free(x);
    return ok ? x : NULL;
}

/* "AB:CD:..." of the certificate's SHA-256. */
static void fingerprint(X509 *x, char *out, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!X509_digest(x, EVP_sha256(), md, &n)) return;
    for (unsigned int i = 0; i < n && 3 * (size_t)i + 3 <= size; i++)
        snprintf(out + 3 * i, size - 3 * i, "%02X%s", md[i], i + 1 < n ? ":" : "");
}

/* Key and certificate as PEM into a memory file: its fd, or -1. */
static int pem_file(EVP_PKEY *key, X509 *x)
{
    int fd = memfd_create("csock-ephemeral", MFD_CLOEXEC);
    if (fd < 0) return -1;
    BIO *b = BIO_new_fd(fd, BIO_NOCLOSE);
    int ok = b && PEM_write_bio_X509(b, x) && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) &&
             BIO_flush(b) == 1;
    BIO_free(b);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

void nc_ephemeral_cert(nc_opts *o)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = key ? self_signed(key) : NULL;
    int fd = x ? pem_file(key, x) : -1;
    char fp[3 * EVP_MAX_MD_SIZE + 1];
    if (x) fingerprint(x, fp, sizeof fp);
    X509_free(x);
    EVP_PKEY_free(key);
    if (fd < 0) cli_die(CLI_ERR, "--ssl: cannot make a temporary certificate (give --cert)");
    o->ephemeral_fd = fd;
    snprintf(o->ephemeral_path, sizeof o->ephemeral_path, "/proc/self/fd/%d", fd);
    o->tls.cert = o->ephemeral_path;
    cli_warn("a temporary certificate (give --cert and --key for a permanent one); "
             "SHA-256 fingerprint: %s", fp);
}
