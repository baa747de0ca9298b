/* The chat page that a ws:// endpoint of `csock serve chat` serves at GET /
 * (HTML, CSS and JavaScript in one string, no external resources). */
#ifndef CSOCK_CLI_CHAT_PAGE_H
#define CSOCK_CLI_CHAT_PAGE_H

#include <stddef.h>

extern const char cli_chat_page[];   /* NUL-terminated */
extern const size_t cli_chat_page_len; /* bytes, without the NUL */

#endif
