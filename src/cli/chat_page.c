/* Placeholder until the real page lands (branch h-page replaces this file). */
#include "cli/chat_page.h"

const char cli_chat_page[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>csock chat</title></head>\n"
    "<body><p>chat page not built</p></body></html>\n";
const size_t cli_chat_page_len = sizeof cli_chat_page - 1;
