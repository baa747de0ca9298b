/* csock_stream_detach()'s hook for the completion I/O of stream_uring.c:
 * a request of a detaching stream completed, so it may be ready now. */
#ifndef CSOCK_STREAM_DETACH_H
#define CSOCK_STREAM_DETACH_H

#include "net/stream_int.h"

/* Check again (from the loop) whether s, a stream being detached (F_DETACH),
 * has nothing in flight and nothing queued any more. */
void csock__stream_detach_kick(csock_stream *s);

#endif
