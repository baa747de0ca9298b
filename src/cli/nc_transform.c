/* Byte transforms of the relay: the -x hex dump, -C CRLF, --chat tags and
 * the cutting of input lines into datagrams. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "cli/netcat.h"

#define HEX_PER_LINE 16 /* bytes per -x line, as ncat and `hexdump -C` */

/* --hex-dump-annotated: a header line per chunk, then `hexdump -C` style lines. */
static void dump_annotated(FILE *f, int sent, const nc_peer *p, const char *buf, size_t len)
{
    fprintf(f, "%c %zu bytes %s %s\n", sent ? '>' : '<', len, sent ? "to" : "from", p->name);
    for (size_t off = 0; off < len; off += HEX_PER_LINE) {
        size_t n = len - off < HEX_PER_LINE ? len - off : HEX_PER_LINE;
        fprintf(f, "%08zx ", off);
        for (size_t i = 0; i < HEX_PER_LINE; i++) {
            if (i == HEX_PER_LINE / 2) fputc(' ', f);
            if (i < n)
                fprintf(f, " %02x", (unsigned char)buf[off + i]);
            else
                fputs("   ", f);
        }
        fputs("  |", f);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)buf[off + i];
            fputc(ch >= 32 && ch < 127 ? ch : '.', f);
        }
        fputs("|\n", f);
    }
}

/* -x / --hex-dump: ncat's format, byte for byte. Each chunk (either way)
 * starts again at offset 0; a line is the offset, 16 bytes in hex (a space
 * more after the 8th and the 16th) and the same as text, graphic characters
 * only, padded to the full width. */
static void dump_ncat(FILE *f, const char *buf, size_t len)
{
    for (size_t off = 0; off < len; off += HEX_PER_LINE) {
        size_t n = len - off < HEX_PER_LINE ? len - off : HEX_PER_LINE;
        fprintf(f, "%04zx   ", off);
        for (size_t i = 0; i < HEX_PER_LINE; i++) {
            if (i < n)
                fprintf(f, "%02x ", (unsigned char)buf[off + i]);
            else
                fputs("   ", f);
            if (i == HEX_PER_LINE / 2 - 1 || i == HEX_PER_LINE - 1) fputc(' ', f);
        }
        for (size_t i = 0; i < HEX_PER_LINE; i++) {
            unsigned char ch = i < n ? (unsigned char)buf[off + i] : ' ';
            fputc(i >= n ? ' ' : isgraph(ch) ? ch : '.', f);
        }
        fputc('\n', f);
    }
}

/* Flush a capture file; one that cannot be written (a full disk, or the
 * file size limit: csock ignores SIGXFSZ) loses what follows, said once
 * per file (bit), and the session goes on. */
static void capture_flush(nc_ctx *c, FILE *f, int bit, const char *opt, const char *path)
{
    if (fflush(f) == 0 && !ferror(f)) return;
    if (c->capture_failed & bit) return;
    c->capture_failed |= bit;
    cli_warn("%s %s: %s (what follows is not captured)", opt, path, strerror(errno));
}

/* Every chunk sent to (`sent`) or received from peer p: -o gets the bytes,
 * -x the dump. */
void hexdump(nc_ctx *c, int sent, const nc_peer *p, const char *buf, size_t len)
{
    const nc_opts *o = c->o;
    if (!len) return;
    if (o->output) {
        fwrite(buf, 1, len, o->output);
        capture_flush(c, o->output, 1, "--output", o->output_path);
    }
    if (!o->hexdump) return;
    if (o->hexdump_annotated)
        dump_annotated(o->hexdump, sent, p, buf, len);
    else
        dump_ncat(o->hexdump, buf, len);
    capture_flush(c, o->hexdump, 2, o->hexdump_annotated ? "--hex-dump-annotated" : "--hex-dump", o->dump_path);
}

/* -C: a LF not already after a CR goes out as CRLF. *cr carries the last
 * byte across chunks. `out` holds at least 2 * len bytes. */
size_t to_crlf(const char *in, size_t len, char *out, int *cr)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && !*cr) out[n++] = '\r';
        out[n++] = in[i];
        *cr = in[i] == '\r';
    }
    return n;
}

/* --chat: the text as it is, but for what could take over a member's
 * terminal or is not text: control bytes (C0 but tab, CR and LF; DEL; the
 * C1 controls U+0080-U+009F, which some terminals obey) and bytes that are
 * not well-formed UTF-8 are written as \ooo, one per byte, as ncat's chat
 * filter writes them. Valid UTF-8 passes: "héllo" reaches a browser and a
 * terminal as "héllo", not "h\303\251llo" (ncat escapes every byte over
 * 127, a choice from before UTF-8 terminals). A character cut between two
 * reads is escaped too: each chunk is checked alone. `out` holds 4 * len
 * bytes. */
size_t chat_escape(const char *in, size_t len, char *out)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char ch = u[i];
        size_t k = ch < 0x80 ? (ch >= 0x20 && ch < 0x7f) || ch == '\n' || ch == '\t' || ch == '\r'
                             : cli_utf8_char(u + i, len - i);
        if (k == 2 && ch == 0xc2 && u[i + 1] < 0xa0) k = 0; /* a C1 control */
        if (!k) {
            n += (size_t)sprintf(out + n, "\\%03o", ch);
            i++;
            continue;
        }
        memcpy(out + n, in + i, k);
        n += k;
        i += k;
    }
    return n;
}

/* --chat: "<TAG> " then the escaped text. `out` holds CHAT_TAG_MAX + 4 * len bytes. */
size_t chat_tag(const char *tag, const char *in, size_t len, char *out)
{
    size_t n = (size_t)sprintf(out, "<%s> ", tag);
    return n + chat_escape(in, len, out + n);
}

/* Datagram peers get one datagram per line: the size of the next message in
 * buf, or 0 while its line is incomplete (`final`: no more input will come). */
size_t next_dgram(const char *buf, size_t len, int final)
{
    const char *nl = memchr(buf, '\n', len < MAX_DGRAM ? len : MAX_DGRAM);
    if (nl) return (size_t)(nl - buf) + 1;
    if (len >= MAX_DGRAM) return MAX_DGRAM;
    return final ? len : 0;
}
