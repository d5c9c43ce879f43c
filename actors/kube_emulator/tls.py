"""A self-signed CA and a server certificate for `--tls`, made once with openssl.

Kept in DATA_DIR/tls/ (ca.crt, ca.key, server.crt, server.key) so restarts keep the same
CA and kubeconfigs written earlier stay valid. The server certificate's SANs cover
127.0.0.1, localhost and the listen host.
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from pathlib import Path


def _san(host: str) -> str:
    names = {"IP:127.0.0.1", "DNS:localhost"}
    try:
        ipaddress.ip_address(host)
        names.add(f"IP:{host}")
    except ValueError:
        if host:
            names.add(f"DNS:{host}")
    return ",".join(sorted(names))


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def ensure_certificates(data_dir: Path, host: str) -> Path:
    """Create the CA and server certificate unless present; return the tls directory."""
    tls = data_dir / "tls"
    if (tls / "server.crt").exists() and (tls / "server.key").exists() and (
        tls / "ca.crt"
    ).exists():
        return tls
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_opts = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *key_opts, "-keyout", str(tls / "ca.key"),
             "-out", str(tls / "ca.crt"), "-days", "3650", "-subj", "/CN=kube-emulator-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", *key_opts, "-keyout", str(tls / "server.key"),
             "-out", str(tls / "server.csr"), "-subj", "/CN=kube-emulator")
    ext = tls / "server.ext"
    ext.write_text(
        f"subjectAltName={_san(host)}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", str(tls / "server.csr"), "-CA", str(tls / "ca.crt"),
             "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-out", str(tls / "server.crt"),
             "-days", "3650", "-extfile", str(ext))
    return tls


def server_context(tls: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "server.crt", tls / "server.key")
    return context
