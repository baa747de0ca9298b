/* csock_handle_close(): close whatever csock_loop_walk() found. Here in
 * the net layer, the lowest that knows every kind of handle (streams,
 * listeners and datagram sockets are net's; io, timers and signals the
 * loop's). */
#include "net/net_int.h"

void csock_handle_close(csock_handle_kind kind, void *handle, void *data)
{
    (void)data;
    switch (kind) {
    case CSOCK_HANDLE_IO: csock_io_close(handle, NULL); break;
    case CSOCK_HANDLE_TIMER: csock_timer_close(handle, NULL); break;
    case CSOCK_HANDLE_SIGNAL: csock_signal_close(handle, NULL); break;
    case CSOCK_HANDLE_STREAM: csock_stream_close(handle, NULL); break;
    case CSOCK_HANDLE_LISTENER: csock_listener_close(handle, NULL); break;
    case CSOCK_HANDLE_DGRAM: csock_dgram_close(handle, NULL); break;
    }
}
