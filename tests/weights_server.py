"""A real HTTP server on 127.0.0.1 for download tests, with Range support and scripted faults.

Paths: /good/<f>, /drop/<f> (first response cut off halfway), /slow/<f>, /stall/<f>,
/wrong/<f> (other bytes), /status/<code>. ``files`` maps <f> to bytes; ``log`` records
(path, Range header) of every request.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WeightsServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.log: list[tuple[str, str | None]] = []
        self.dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.log.append((self.path, self.headers.get("Range")))
                parts = self.path.strip("/").split("/")
                mode, name = parts[0], parts[-1]
                if mode == "status":
                    self._send_status(int(name))
                    return
                data = server.files.get(name)
                if data is None:
                    self._send_status(404)
                    return
                if mode == "wrong":
                    data = bytes(b ^ 0x5A for b in data)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and mode != "wrong":
                    start = int(rng[len("bytes="):].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                if mode == "stall":
                    self.wfile.write(body[:1024])
                    self.wfile.flush()
                    time.sleep(5)
                    return
                if mode == "drop" and name not in server.dropped:
                    server.dropped.add(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                step = 1 << 16
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    if mode == "slow":
                        time.sleep(0.02)

            def _send_status(self, code: int) -> None:
                body = f"status {code}".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "WeightsServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
