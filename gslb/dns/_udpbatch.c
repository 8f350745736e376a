/* Batched UDP I/O for gslb: drain a socket with recvmmsg, answer each datagram with a Python
 * callable, send the replies with sendmmsg. The optional compiled half of gslb/dns/udpio.py
 * (which falls back to asyncio's per-datagram path when this module is not built).
 *
 *   drain(fd, buffer, respond, limit, max_batches) -> (received, sent, truncated, dropped, error)
 *
 * fd: a non-blocking UDP socket. buffer: a writable bytes-like object of BATCH * slot bytes, one
 * slot per datagram (the caller keeps one per socket: no allocation per call).
 * respond(data: bytes, source: str) -> bytes-like | None is called once per datagram, in arrival
 * order; limit is None or limit(reply, source) -> bytes-like | None, called on each reply
 * (response rate limiting).
 * At most max_batches batches of up to BATCH datagrams are read per call, so one busy socket
 * cannot hold the event loop: the loop calls again while the socket stays readable.
 * Replies go out in the order their queries arrived, one sendmmsg per batch (a partial send is
 * resumed where it stopped). A datagram larger than a slot (MSG_TRUNC) is dropped unanswered and
 * counted in `truncated`. A reply the kernel will not take now (EAGAIN, ENOBUFS) is dropped with
 * the rest of its batch, never waited for, and counted in `dropped`, as is a reply the kernel
 * refuses (EMSGSIZE, EACCES, ...), which is skipped. `error` is None, or the first exception
 * respond/limit raised (that datagram gets no reply; the others are answered) or the OSError of
 * a failed recvmmsg (other than EAGAIN/EINTR, which just end the call).
 *
 * References, and who owns each (reviewed: every path releases what it owns exactly once):
 * - fd, respond, limit, max_batches: borrowed from the argument tuple for the whole call.
 * - buffer: a Py_buffer view taken by PyArg_ParseTuple("w*"), released by PyBuffer_Release on
 *   every exit after a successful parse; it pins the buffer (no resize) while the GIL is released.
 * - data (PyBytes_FromStringAndSize): new, owned by the loop body, released right after respond.
 * - source (the client address string): new, owned by `last_source`, which is reused for the
 *   next datagram from the same address (the cache holds one reference, each call borrows it);
 *   released when a different address arrives and at the end of the call.
 * - reply (respond's result): new. limit's result replaces it (the old reply released, the new
 *   one owned). None is released at once. A bytes-like reply (bytes, bytearray, memoryview) is
 *   exported into views[k] (PyObject_GetBuffer: the view holds its own reference and pins a
 *   bytearray against resizing while the GIL is released), then our reference is released; the
 *   iovec points into the view, which release_views() releases after sendmmsg has returned.
 * - error: the first exception (new reference from fetch_error); a later one is released. The
 *   result tuple takes its own reference (Py_BuildValue "O"), then ours is released.
 * - the result tuple: new, returned to the caller.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* recvmmsg, sendmmsg (glibc); Python.h defines it too */
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define BATCH 64        /* datagrams per recvmmsg/sendmmsg */
#define MIN_SLOT 512    /* RFC 1035: every DNS server must take a 512-byte message */
#define ADDR_TEXT 80    /* INET6_ADDRSTRLEN + '%' + IF_NAMESIZE */

/* The exception being raised, as one new reference (None if there is none). */
static PyObject *fetch_error(void) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *error = PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    PyObject *error = value;
#endif
    if (error == NULL)
        Py_RETURN_NONE;
    return error;
}

/* Keep the first error; release later ones. Takes ownership of `error`. */
static void keep_error(PyObject **first, PyObject *error) {
    if (*first == NULL)
        *first = error;
    else
        Py_DECREF(error);
}

/* The address as asyncio gives it in addr[0]: '127.0.0.1', '::1', 'fe80::1%eth0'. */
static PyObject *address_text(const struct sockaddr_storage *addr) {
    char text[ADDR_TEXT];
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
    } else if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (in6->sin6_scope_id != 0) { /* link-local: getnameinfo's '%' + interface name or number */
            size_t used = strlen(text);
            char name[IF_NAMESIZE];
            if (if_indextoname(in6->sin6_scope_id, name) != NULL)
                snprintf(text + used, sizeof text - used, "%%%s", name);
            else
                snprintf(text + used, sizeof text - used, "%%%u", (unsigned)in6->sin6_scope_id);
        }
    } else {
        text[0] = '\0'; /* not an IP socket: no address to give */
    }
    return PyUnicode_DecodeASCII(text, (Py_ssize_t)strlen(text), "strict");
}

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_scope_id == y->sin6_scope_id && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

static void release_views(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++)
        PyBuffer_Release(&views[i]);
}

/* Send out[0..count) in order; resume after a partial send, skip a message the kernel refuses,
 * drop the rest when the socket cannot take more now. Returns the number sent; adds to *dropped. */
static Py_ssize_t send_batch(int fd, struct mmsghdr *out, int count, Py_ssize_t *dropped) {
    Py_ssize_t sent = 0;
    int done = 0;
    while (done < count) {
        int result, failure;
        Py_BEGIN_ALLOW_THREADS
        result = sendmmsg(fd, out + done, (unsigned int)(count - done), MSG_DONTWAIT);
        failure = errno;
        Py_END_ALLOW_THREADS
        if (result > 0) {
            sent += result;
            done += result;
        } else if (result == 0 || failure == EAGAIN || failure == EWOULDBLOCK || failure == ENOBUFS ||
                   failure == EINTR) {
            *dropped += count - done; /* UDP: a reply that cannot go now is lost, as on a full link */
            break;
        } else {
            *dropped += 1; /* this message only (EMSGSIZE, EACCES, EPERM, EINVAL, ...) */
            done += 1;
        }
    }
    return sent;
}

static PyObject *drain(PyObject *module, PyObject *args) {
    int fd, max_batches;
    Py_buffer view;
    PyObject *respond, *limit;
    if (!PyArg_ParseTuple(args, "iw*OOi:drain", &fd, &view, &respond, &limit, &max_batches))
        return NULL;
    Py_ssize_t slot = view.len / BATCH;
    if (slot < MIN_SLOT || max_batches < 1 || !PyCallable_Check(respond) ||
        (limit != Py_None && !PyCallable_Check(limit))) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "drain: buffer must hold %d slots of >= %d bytes, max_batches >= 1, "
                     "respond and limit callables (limit may be None)", BATCH, MIN_SLOT);
        return NULL;
    }

    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
    struct sockaddr_storage addrs[BATCH], last_addr;
    Py_buffer views[BATCH];
    PyObject *last_source = NULL, *error = NULL;
    Py_ssize_t received = 0, sent = 0, truncated = 0, dropped = 0;
    char *base = (char *)view.buf;

    for (int batch = 0; batch < max_batches; batch++) {
        for (int i = 0; i < BATCH; i++) {
            in_iov[i].iov_base = base + (Py_ssize_t)i * slot;
            in_iov[i].iov_len = (size_t)slot;
            memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
            in[i].msg_hdr.msg_name = &addrs[i];
            in[i].msg_hdr.msg_namelen = sizeof addrs[i];
            in[i].msg_hdr.msg_iov = &in_iov[i];
            in[i].msg_hdr.msg_iovlen = 1;
        }
        int count, failure;
        Py_BEGIN_ALLOW_THREADS
        count = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
        failure = errno;
        Py_END_ALLOW_THREADS
        if (count < 0) {
            if (failure != EAGAIN && failure != EWOULDBLOCK && failure != EINTR) {
                errno = failure;
                PyErr_SetFromErrno(PyExc_OSError);
                keep_error(&error, fetch_error());
            }
            break;
        }
        received += count;
        int k = 0;
        for (int i = 0; i < count; i++) {
            if (in[i].msg_hdr.msg_flags & MSG_TRUNC) {
                truncated++; /* larger than a slot: no DNS query is; not answered */
                continue;
            }
            if (last_source == NULL || !same_address(&addrs[i], &last_addr)) {
                Py_CLEAR(last_source);
                last_source = address_text(&addrs[i]);
                if (last_source == NULL) {
                    keep_error(&error, fetch_error());
                    continue;
                }
                last_addr = addrs[i];
            }
            PyObject *data = PyBytes_FromStringAndSize(in_iov[i].iov_base, (Py_ssize_t)in[i].msg_len);
            if (data == NULL) {
                keep_error(&error, fetch_error());
                continue;
            }
            PyObject *reply = PyObject_CallFunctionObjArgs(respond, data, last_source, NULL);
            Py_DECREF(data);
            if (reply != NULL && reply != Py_None && limit != Py_None) {
                PyObject *limited = PyObject_CallFunctionObjArgs(limit, reply, last_source, NULL);
                Py_DECREF(reply);
                reply = limited;
            }
            if (reply == NULL) {
                keep_error(&error, fetch_error());
                continue;
            }
            if (reply == Py_None) {
                Py_DECREF(reply);
                continue;
            }
            int exported = PyObject_GetBuffer(reply, &views[k], PyBUF_SIMPLE);
            Py_DECREF(reply); /* on success the view holds its own reference */
            if (exported < 0) {
                keep_error(&error, fetch_error()); /* not bytes-like: TypeError */
                continue;
            }
            out_iov[k].iov_base = views[k].buf;
            out_iov[k].iov_len = (size_t)views[k].len;
            memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
            out[k].msg_hdr.msg_name = &addrs[i];
            out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
            out[k].msg_hdr.msg_iov = &out_iov[k];
            out[k].msg_hdr.msg_iovlen = 1;
            k++;
        }
        if (k > 0)
            sent += send_batch(fd, out, k, &dropped);
        release_views(views, k);
        if (count < BATCH)
            break; /* the socket is (very likely) empty: spare the EAGAIN round trip */
    }
    Py_XDECREF(last_source);
    PyBuffer_Release(&view);

    PyObject *result = Py_BuildValue("(nnnnO)", received, sent, truncated, dropped, error ? error : Py_None);
    Py_XDECREF(error); /* Py_BuildValue's "O" took its own reference */
    return result;
}

static PyMethodDef methods[] = {
    {"drain", drain, METH_VARARGS,
     "drain(fd, buffer, respond, limit, max_batches) -> (received, sent, truncated, dropped, error)\n\n"
     "Read up to max_batches batches of datagrams with recvmmsg, answer each with respond(data, source)\n"
     "(then limit(reply, source) unless limit is None), send the replies in order with sendmmsg."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "gslb.dns._udpbatch",
    .m_doc = "Batched UDP I/O (recvmmsg/sendmmsg) for gslb; see gslb/dns/udpio.py.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__udpbatch(void) {
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "BATCH", BATCH) < 0 || PyModule_AddIntConstant(module, "MIN_SLOT", MIN_SLOT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
