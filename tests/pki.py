"""A private certificate authority for tests and benchmarks, made with openssl: a CA, and server
certificates for 127.0.0.1 and localhost signed by it (ECDSA P-256, valid two days)."""
import subprocess
from pathlib import Path


def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {p.stderr}")


def make_ca(directory, name):
    """A self-signed CA in directory: (certificate path, key path)."""
    d = Path(directory)
    crt, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return crt, key


def make_server_cert(directory, ca, name="bot-api"):
    """A certificate for 127.0.0.1 and localhost signed by ca: (certificate path, key path)."""
    d = Path(directory)
    crt, key, csr = d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr"
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext), cwd=d)
    return crt, key
