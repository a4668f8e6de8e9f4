#!/usr/bin/env python3
"""Records how a real nsqd answers a client that half-closes its sending
side in the middle of a command (the truncated_* vectors).

    NSQ_BIN_DIR=path/to/nsq/bin tests/conformance/record_truncated.py [OUTDIR]

NSQ_BIN_DIR defaults to ../shared/peers/bin next to the project; OUTDIR to
tests/conformance/nsqd-1.3.0.  The script starts two nsqd processes on free
loopback ports with fresh data folders (one plain, one with
--auth-http-address pointing at a small auth server run here), runs every
case on a new connection, writes one JSON file per case in the vectors'
format and stops everything.  Only the Python standard library is used.  The
normal test run never needs it: the recordings are committed.
"""
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NSQ_BIN_DIR",
                     os.path.join(ROOT, "..", "shared", "peers", "bin"))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "nsqd-1.3.0")

AUTH_SECRET = b"s3cret"
QUIET_S = 0.3    # a step's answer is complete after this long without bytes
CLOSE_WAIT_S = 5  # bound on waiting for nsqd to close after the half-close

BASE_FLAGS = ["--tcp-address=127.0.0.1:<tcp-port>",
              "--http-address=127.0.0.1:<http-port>",
              "--data-path=<fresh-empty-dir>",
              "--mem-queue-size=100000"]
AUTH_FLAG = "--auth-http-address=127.0.0.1:<auth-port>"

IDENTIFY_BODY = json.dumps(
    {"client_id": "conformance", "hostname": "conformance.local",
     "user_agent": "nsqpub-conformance/1.0", "feature_negotiation": False},
    separators=(",", ":")).encode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def size(n):
    return n.to_bytes(4, "big")


class AuthHandler(http.server.BaseHTTPRequestHandler):
    """nsqd's auth server: the secret s3cret gets every permission."""

    def do_GET(self):
        ok = ("secret=" + AUTH_SECRET.decode()) in self.path
        body = json.dumps({"identity": "bench", "identity_url": "",
                           "ttl": 3600,
                           "authorizations": [{"topic": ".*",
                                               "channels": [".*"],
                                               "permissions": ["subscribe",
                                                               "publish"]}]})
        self.send_response(200 if ok else 403)
        self.end_headers()
        if ok:
            self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


class Nsqd:
    def __init__(self, auth_port=None):
        self.tcp, self.http = free_port(), free_port()
        self.data = tempfile.mkdtemp(prefix="nsqd-record-")
        args = [os.path.join(BIN, "nsqd"),
                "--tcp-address=127.0.0.1:%d" % self.tcp,
                "--http-address=127.0.0.1:%d" % self.http,
                "--https-address=127.0.0.1:%d" % free_port(),
                "--data-path=" + self.data, "--mem-queue-size=100000"]
        if auth_port:
            args.append("--auth-http-address=127.0.0.1:%d" % auth_port)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                urllib.request.urlopen(
                    "http://127.0.0.1:%d/ping" % self.http, timeout=1).read()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit("nsqd did not start")
                time.sleep(0.05)

    def delete_topic(self, topic):
        req = urllib.request.Request(
            "http://127.0.0.1:%d/topic/delete?topic=%s" % (self.http, topic),
            method="POST")
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except OSError:
            pass  # a topic nsqd never created

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def text(b):
    out = []
    for c in b:
        ch = chr(c)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\\":
            out.append("\\\\")
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def parse_frames(b):
    frames, off = [], 0
    names = {0: "response", 1: "error", 2: "message"}
    while off + 8 <= len(b):
        n = int.from_bytes(b[off:off + 4], "big")
        typ = int.from_bytes(b[off + 4:off + 8], "big")
        data = b[off + 8:off + 4 + n]
        frames.append({"type": typ, "type_name": names.get(typ, "?"),
                       "size": n, "data_text": text(data),
                       "data_hex": data.hex(), "variable_ranges": []})
        off += 4 + n
    if off != len(b):
        raise SystemExit("partial frame in answer: %s" % b.hex())
    return frames


def read_answer(sock, until_close):
    """Reads what nsqd sends: until it closes, or QUIET_S without bytes."""
    got = b""
    sock.settimeout(CLOSE_WAIT_S if until_close else QUIET_S)
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return got, None
        except ConnectionResetError:
            return got, "reset"
        if not chunk:
            return got, "fin"
        got += chunk


def record(nsqd, case, flags):
    topic = "conf_" + case["name"]
    sock = socket.create_connection(("127.0.0.1", nsqd.tcp))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    steps = []
    for send in case["steps"]:
        step = {}
        half_close = send is None
        if half_close:
            sock.shutdown(socket.SHUT_WR)
            step["action"] = "shutdown_write"
            send = b""
        else:
            send = send.replace(b"<topic>", topic.encode())
            sock.sendall(send)
        step.update({"send_hex": send.hex(), "send_text": text(send),
                     "transport": "tcp"})
        recv, close = read_answer(sock, half_close)
        frames = parse_frames(recv)
        step.update({"recv_hex": recv.hex(), "recv_frames": frames,
                     "recv_variable_ranges": [],
                     "server_closed": close is not None})
        if close:
            step["close_kind"] = close
        steps.append(step)
        if close:
            break
    sock.close()
    nsqd.delete_topic(topic)
    return {"name": case["name"], "group": "truncated",
            "description": case["description"], "nsqd_version": "1.3.0",
            "nsqd_flags": flags, "topic": topic, "steps": steps}


MAGIC = b"  V2"
PUB = b"PUB <topic>\n"
DPUB = b"DPUB <topic> 1000\n"
MPUB = b"MPUB <topic>\n"
BODY = b"hello world"
MPUB_BODY = size(2) + size(5) + b"hello" + size(5) + b"world"
AUTH_BODY = AUTH_SECRET


def cut(name, desc, partial, auth=False, before=MAGIC):
    """A case: the magic (or what precedes), the partial bytes, the
    half-close."""
    return {"name": "truncated_" + name, "description": desc, "auth": auth,
            "steps": [before, partial, None] if partial else [before, None]}


CASES = [
    {"name": "truncated_magic", "auth": False,
     "description": "Half-close after 3 bytes of the magic: nsqd closes "
                    "without a frame.",
     "steps": [b"  V", None]},
    cut("line", "Half-close inside a command line (no newline yet): nsqd "
        "closes without a frame.", b"PUB <topic>"),
    cut("between_commands", "Half-close right after a complete PUB: its OK, "
        "then nsqd closes without a frame.",
        PUB + size(len(BODY)) + BODY),
    cut("pub_after_line", "PUB line, then half-close before the size: fatal "
        "E_BAD_MESSAGE 'PUB failed to read message body size'.", PUB),
    cut("pub_in_size", "PUB line and 2 of the 4 size bytes, then "
        "half-close: fatal E_BAD_MESSAGE 'PUB failed to read message body "
        "size'.",
        PUB + size(len(BODY))[:2]),
    cut("pub_in_body", "PUB with 5 of its 11 body bytes, then half-close: "
        "fatal E_BAD_MESSAGE 'PUB failed to read message body'.",
        PUB + size(len(BODY)) + BODY[:5]),
    cut("pub_after_ok", "A complete PUB and 5 bytes of the next one's body "
        "in one write: OK, then at the half-close the second PUB's "
        "E_BAD_MESSAGE 'PUB failed to read message body'.", PUB + size(len(BODY)) + BODY + PUB +
        size(len(BODY)) + BODY[:5]),
    cut("dpub_after_line", "DPUB line, then half-close: fatal E_BAD_MESSAGE "
        "'DPUB failed to read message body size'.", DPUB),
    cut("dpub_in_size", "DPUB line and 3 size bytes, then half-close: fatal "
        "E_BAD_MESSAGE 'DPUB failed to read message body size'.",
        DPUB + size(len(BODY))[:3]),
    cut("dpub_in_body", "DPUB with 5 of its 11 body bytes, then half-close: "
        "fatal E_BAD_MESSAGE 'DPUB failed to read message body'.",
        DPUB + size(len(BODY)) + BODY[:5]),
    cut("mpub_after_line", "MPUB line, then half-close: fatal E_BAD_BODY "
        "'MPUB failed to read body size'.", MPUB),
    cut("mpub_in_size", "MPUB line and 1 size byte, then half-close: fatal "
        "E_BAD_BODY 'MPUB failed to read body size'.",
        MPUB + size(len(MPUB_BODY))[:1]),
    cut("mpub_in_count", "MPUB with its body size and 2 bytes of the "
        "message count, then half-close: fatal E_BAD_BODY 'MPUB failed to "
        "read message count'.",
        MPUB + size(len(MPUB_BODY)) + MPUB_BODY[:2]),
    cut("mpub_in_message_size", "MPUB whose first message is complete and "
        "whose second message size is cut after 2 bytes: fatal "
        "E_BAD_MESSAGE 'MPUB failed to read message(1) body size'.",
        MPUB + size(len(MPUB_BODY)) + MPUB_BODY[:15]),
    cut("mpub_in_message_body", "MPUB cut inside the body of its second "
        "message: fatal E_BAD_MESSAGE 'MPUB failed to read message body'.", MPUB + size(len(MPUB_BODY)) + MPUB_BODY[:20]),
    cut("identify_after_line", "IDENTIFY line, then half-close: fatal "
        "E_BAD_BODY 'IDENTIFY failed to read body size'.", b"IDENTIFY\n"),
    cut("identify_in_size", "IDENTIFY line and 2 size bytes, then "
        "half-close: fatal E_BAD_BODY 'IDENTIFY failed to read body size'.", b"IDENTIFY\n" + size(len(IDENTIFY_BODY))[:2]),
    cut("identify_in_body", "IDENTIFY with half of its JSON body, then "
        "half-close: fatal E_BAD_BODY 'IDENTIFY failed to read body'.",
        b"IDENTIFY\n" + size(len(IDENTIFY_BODY)) +
        IDENTIFY_BODY[:len(IDENTIFY_BODY) // 2]),
    cut("auth_after_line", "nsqd with auth: AUTH line, then half-close: "
        "fatal E_BAD_BODY 'AUTH failed to read body size'.", b"AUTH\n",
        auth=True),
    cut("auth_in_size", "nsqd with auth: AUTH line and 2 size bytes, then "
        "half-close: fatal E_BAD_BODY 'AUTH failed to read body size'.", b"AUTH\n" + size(len(AUTH_BODY))[:2], auth=True),
    cut("auth_in_body", "nsqd with auth: AUTH with 3 of the secret's 6 "
        "bytes, then half-close: fatal E_BAD_BODY 'AUTH failed to read "
        "body'.", b"AUTH\n" + size(len(AUTH_BODY)) + AUTH_BODY[:3],
        auth=True),
    cut("auth_disabled_in_body", "nsqd without auth: AUTH cut inside its "
        "body is answered like with auth (nsqd reads the body before it "
        "checks whether AUTH is enabled): E_BAD_BODY 'AUTH failed to read "
        "body'.",
        b"AUTH\n" + size(len(AUTH_BODY)) + AUTH_BODY[:3]),
]


def main():
    if not os.access(os.path.join(BIN, "nsqd"), os.X_OK):
        raise SystemExit("no nsqd in %s (set NSQ_BIN_DIR)" % BIN)
    auth = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthHandler)
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    plain = Nsqd()
    try:
        with_auth = Nsqd(auth.server_address[1])
    except SystemExit:
        plain.stop()
        raise
    try:
        for case in CASES:
            nsqd = with_auth if case["auth"] else plain
            flags = BASE_FLAGS + ([AUTH_FLAG] if case["auth"] else [])
            vec = record(nsqd, case, flags)
            path = os.path.join(OUT, vec["name"] + ".json")
            with open(path, "w") as f:
                json.dump(vec, f, indent=2)
                f.write("\n")
            last = vec["steps"][-1]
            print("%-36s %s %s" % (vec["name"], last.get("close_kind", "open"),
                                   " | ".join(fr["data_text"]
                                              for s in vec["steps"]
                                              for fr in s["recv_frames"])))
    finally:
        plain.stop()
        with_auth.stop()
        auth.shutdown()


if __name__ == "__main__":
    main()
