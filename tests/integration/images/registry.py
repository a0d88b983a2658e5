"""Registries for the tests, all on 127.0.0.1: Debian's docker-registry
(anonymous, htpasswd basic auth, or token auth with the tiny token server
below), a proxy that counts and can slow requests, and a stub that serves
deliberately broken answers a real registry never gives."""
import base64
import contextlib
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # bcrypt for htpasswd; deprecated, still in Debian 12's Python
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid

import jwt

from conftest import free_port

SERVICE = "aegis-test-registry"
ISSUER = "aegis-test-token-issuer"
USER, PASSWORD = "alice", "s3cret-pass"


def wait_port(port, proc=None, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited ({proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _serve(owner, handler):
    """A threaded HTTP server for handler on a free 127.0.0.1 port, in the
    background; owner gets srv, port and host."""
    owner.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    owner.srv.daemon_threads = True
    owner.port = owner.srv.server_address[1]
    owner.host = f"127.0.0.1:{owner.port}"
    threading.Thread(target=owner.srv.serve_forever, daemon=True).start()


class Registry:
    """docker-registry serving from dir; auth None, "basic" or "token"."""

    def __init__(self, dir, auth=None, token_realm=None, tls=None):
        self.dir, self.port = dir, free_port()
        self.host = f"127.0.0.1:{self.port}"
        os.makedirs(dir, exist_ok=True)
        cfg = [
            "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {dir}/data", "  delete:",
            "    enabled: true", "http:", f"  addr: 127.0.0.1:{self.port}",
        ]
        if tls:
            cfg += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        if auth == "basic":
            with open(f"{dir}/htpasswd", "w") as f:
                f.write(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
            cfg += ["auth:", "  htpasswd:", "    realm: aegis-test", f"    path: {dir}/htpasswd"]
        elif auth == "token":
            cfg += ["auth:", "  token:", f"    realm: {token_realm}", f"    service: {SERVICE}",
                    f"    issuer: {ISSUER}", f"    rootcertbundle: {dir}/../token-cert.pem"]
        with open(f"{dir}/config.yml", "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log = open(f"{dir}/registry.log", "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", f"{dir}/config.yml"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def push(self, source, name, creds=None, all_platforms=False):
        """skopeo copy SOURCE (e.g. oci:/dir:tag) to this registry as NAME."""
        args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
        if creds:
            args += ["--dest-creds", creds]
        if all_platforms:
            args += ["--all"]
        r = subprocess.run(args + [source, f"docker://{self.host}/{name}"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def make_tls_cert(dir):
    """A self-signed certificate for 127.0.0.1: (cert, key) paths."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", f"{dir}/tls-key.pem", "-out", f"{dir}/tls-cert.pem"],
                   check=True, capture_output=True)
    return f"{dir}/tls-cert.pem", f"{dir}/tls-key.pem"


def make_token_cert(dir):
    """The token server's key and the self-signed certificate the registry trusts."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=aegis-test-token", "-keyout", f"{dir}/token-key.pem",
                    "-out", f"{dir}/token-cert.pem"], check=True, capture_output=True)


class TokenServer:
    """A token realm: GET /token?service=&scope= with Basic USER:PASSWORD
    gives a JWT granting the scopes; anything else is 401."""

    def __init__(self, dir):
        with open(f"{dir}/token-key.pem", "rb") as f:
            key = f.read()
        with open(f"{dir}/token-cert.pem") as f:
            pem = f.read()
        der = base64.b64encode(base64.b64decode("".join(
            l for l in pem.splitlines() if "CERTIFICATE" not in l))).decode()
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                server.requests.append((self.path, auth))
                want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != want:
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
                    self.send_response(401)
                else:
                    access = []
                    for scope in q.get("scope", []):
                        kind, name, actions = scope.split(":")
                        access.append({"type": kind, "name": name, "actions": actions.split(",")})
                    now = int(time.time())
                    tok = jwt.encode({"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 600,
                                      "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                                      "access": access}, key, algorithm="RS256",
                                     headers={"x5c": [der]})
                    body = json.dumps({"token": tok, "access_token": tok}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Proxy:
    """A reverse proxy in front of a registry that records every request
    (method, path, Range) and can slow blob bodies to `rate` bytes/s."""

    def __init__(self, upstream_port, rate=None):
        self.requests, self.rate = [], rate
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                proxy.requests.append(("GET", self.path, self.headers.get("Range")))
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("GET", self.path, headers=hdrs)
                resp = conn.getresponse()
                body_iter = iter(lambda: resp.read(16384), b"")
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                slow = proxy.rate and "/blobs/" in self.path
                try:
                    for chunk in body_iter:
                        if slow:
                            for i in range(0, len(chunk), 4096):
                                self.wfile.write(chunk[i:i + 4096])
                                self.wfile.flush()
                                time.sleep(4096 / proxy.rate)
                        else:
                            self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                conn.close()
                self.close_connection = True

            def log_message(self, *a):
                pass

        _serve(self, Handler)

    def blob_gets(self, digest):
        return [r for r in self.requests if r[1].endswith("/blobs/" + digest)]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Stub:
    """A registry that answers from a table: path → (status, headers, body,
    how), how being None, "truncate" (send half the Content-Length)
    or "endless" (stream without end)."""

    def __init__(self):
        self.routes = {}
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                status, headers, body, how = stub.routes.get(
                    self.path, (404, {"Content-Type": "application/json"},
                                b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}', None))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if how == "endless":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        for _ in range(100000):
                            self.wfile.write(body)
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                # "truncate": the length promised, half of it sent
                self.wfile.write(body[:len(body) // 2] if how == "truncate" else body)
                self.close_connection = True

            def log_message(self, *a):
                pass

        _serve(self, Handler)

    def serve_image(self, repo, tag, manifest, media_type, blobs):
        """blobs: digest → bytes, or digest → (body, how)."""
        self.routes[f"/v2/{repo}/manifests/{tag}"] = (200, {"Content-Type": media_type}, manifest, None)
        for d, b in blobs.items():
            body, how = b if isinstance(b, tuple) else (b, None)
            self.routes[f"/v2/{repo}/blobs/{d}"] = (200, {"Content-Type": "application/octet-stream"},
                                                    body, how)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
