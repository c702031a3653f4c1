"""Test certificates made at test time with the `openssl` command (stdlib only).

    ca = TestCa(tmpdir)                  # a CA: ca.cert (PEM), ca.key
    leaf = ca.issue("server")            # leaf.cert, leaf.key: CN 127.0.0.1,
                                         # SAN IP 127.0.0.1, IP ::1, DNS localhost
    enc = ca.issue("locked", passphrase="secret")   # leaf.key AES-encrypted

Keys are ECDSA P-256. Nothing here is ever committed: every file lives in the
caller's temporary directory. OpenSSLMissing is raised when the command is
not installed (tests turn it into a skip, exit 77).
"""

import os
import shutil
import subprocess


class OpenSSLMissing(RuntimeError):
    pass


def _openssl(*args, cwd):
    exe = shutil.which("openssl")
    if exe is None:
        raise OpenSSLMissing("the openssl command is not installed (apt-get install openssl)")
    r = subprocess.run([exe, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[:2]),
                                                      r.stderr.decode(errors="replace")))


class Leaf:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key


class TestCa:
    def __init__(self, directory, name="spry test CA"):
        self.dir = directory
        self.cert = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "ca.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
                 "-subj", "/CN=%s" % name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=directory)

    def issue(self, stem, cn="127.0.0.1", sans=("IP:127.0.0.1", "IP:::1", "DNS:localhost"),
              passphrase=None):
        """A server certificate signed by this CA, in STEM.pem and STEM.key."""
        cert = os.path.join(self.dir, stem + ".pem")
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        ext = os.path.join(self.dir, stem + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid,issuer\n"
                    "subjectAltName=%s\n" % ",".join(sans))
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn, cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
                 "-extfile", ext, "-out", cert, cwd=self.dir)
        if passphrase is not None:
            plain = key + ".plain"
            os.rename(key, plain)
            _openssl("pkey", "-in", plain, "-aes256", "-passout", "pass:" + passphrase,
                     "-out", key, cwd=self.dir)
            os.unlink(plain)
        os.unlink(csr)
        return Leaf(cert, key)
