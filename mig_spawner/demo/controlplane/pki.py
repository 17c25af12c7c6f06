"""Credentials for the real control plane: a CA, serving and client certificates, the
service-account key pair (all made with ``openssl``), and kubeconfig files."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _self_signed_ca(directory: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "7",
        "-subj", subject, cwd=directory,
    )  # fmt: skip


def issue_cert(
    directory: Path,
    name: str,
    subject: str,
    usage: str,
    san: str | None = None,
    *,
    ca: Path,
) -> tuple[Path, Path]:
    """``directory/name.crt`` and ``.key`` (EC P-256), signed by ``ca`` (``.crt``, with its
    ``.key`` beside it), for ``usage`` (``serverAuth`` or ``clientAuth``) with an optional
    ``subjectAltName`` (``IP:127.0.0.1,DNS:localhost``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ext = d / f"{name}.ext"
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca), "-CAkey",
        str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "7", "-extfile", ext.name,
        "-out", f"{name}.crt", cwd=d,
    )  # fmt: skip
    return d / f"{name}.crt", d / f"{name}.key"


#: the front proxy's client certificate name, which kube-apiserver's
#: ``--requestheader-allowed-names`` lets assert a user to an aggregated API server
FRONT_PROXY_CLIENT = "front-proxy-client"


def make_pki(directory: Path) -> None:
    """A CA, the API server's serving certificate, client certificates, the
    service-account key pair, with ``openssl`` (EC P-256 keys; RSA for the SA key), and the
    aggregation layer's front-proxy CA and client certificate: with them kube-apiserver
    proxies requests for an APIService (Kueue's visibility API) to the server behind it,
    which trusts the user named in the request's headers because the front-proxy CA signed
    the connection's client certificate (it reads that CA from the
    ``kube-system/extension-apiserver-authentication`` ConfigMap)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    _self_signed_ca(d, "ca", "/CN=mig-spawner-test-ca")
    certs = {
        "apiserver": ("/CN=kube-apiserver", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
        "admin": ("/O=system:masters/CN=mig-spawner-admin", "clientAuth", None),
        "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
        "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
    }
    for name, (subject, usage, san) in certs.items():
        issue_cert(d, name, subject, usage, san, ca=d / "ca.crt")
    _self_signed_ca(d, "front-proxy-ca", "/CN=mig-spawner-test-front-proxy-ca")
    issue_cert(
        d, FRONT_PROXY_CLIENT, f"/CN={FRONT_PROXY_CLIENT}", "clientAuth",
        ca=d / "front-proxy-ca.crt",
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_dict(
    server: str,
    ca: Path,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    user: str = "admin",
    namespace: str = "default",
) -> dict[str, Any]:
    creds: dict[str, str] = {}
    if cert is not None and key is not None:
        creds = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    if token is not None:
        creds["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "real", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {"name": "real", "context": {"cluster": "real", "user": user, "namespace": namespace}}
        ],
        "current-context": "real",
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        yaml.safe_dump(config, file)
    return path
