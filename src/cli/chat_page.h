/* The chat page of `csock serve chat` on a ws:// or wss:// endpoint: served
 * at the endpoint's path to a GET without Upgrade; its script connects back
 * to the same URL with Upgrade and talks in lines (one text message each). */
#ifndef CSOCK_CLI_CHAT_PAGE_H
#define CSOCK_CLI_CHAT_PAGE_H

#include <stddef.h>

/* The chat page (HTML with its script, no external resources). */
extern const char cli_chat_page[];
extern const size_t cli_chat_page_len;

#endif
