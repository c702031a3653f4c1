#pragma once
// Test certificates, made at test time with the `openssl` command in a fresh
// temporary folder (no key is ever committed): a CA, server certificates
// signed by it (RSA and EC), SNI certificates, client certificates (one from
// an untrusted CA), an encrypted key and a key that matches nothing.

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "spry/tls.h"

namespace spry_test {

class TlsCerts {
 public:
  // Made once per process, removed at exit.
  static const TlsCerts& get() {
    static const TlsCerts certs;
    return certs;
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A new pair `name`.pem / `name`.key with CN `cn`, signed by the CA
  // (`ec`: P-256, else RSA 2048). The .pem holds the chain: leaf, then CA.
  void issue(const std::string& name, const std::string& cn, bool ec = true,
             const std::string& ca = "ca") const {
    const std::string key = ec ? "-newkey ec -pkeyopt ec_paramgen_curve:P-256" : "-newkey rsa:2048";
    run("openssl req -new " + key + " -nodes -keyout " + q(name + ".key") + " -out " +
        q(name + ".csr") + " -subj " + q("/CN=" + cn));
    writeFile(name + ".ext", "subjectAltName=DNS:" + cn + "\n");
    run("openssl x509 -req -in " + q(name + ".csr") + " -CA " + q(ca + ".pem") + " -CAkey " +
        q(ca + ".key") + " -CAcreateserial -days 2 -out " + q(name + ".leaf") + " -extfile " +
        q(name + ".ext"));
    writeFile(name + ".pem", readFile(name + ".leaf") + readFile(ca + ".pem"));
  }

  void writeFile(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
  }
  std::string readFile(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  TlsCerts(const TlsCerts&) = delete;
  TlsCerts& operator=(const TlsCerts&) = delete;
  ~TlsCerts() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

 private:
  TlsCerts() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spry-tls-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    makeCa("ca", "spry test CA");
    makeCa("rogue-ca", "spry rogue CA");
    issue("ec", "localhost");
    issue("rsa", "localhost", false);
    issue("api", "api.example.com");
    issue("wild", "wild.example.net");
    issue("client", "alice");
    issue("rogue-client", "mallory", true, "rogue-ca");
    issue("other", "other.example.com");
    run("openssl pkey -in " + q("ec.key") + " -aes256 -passout pass:s3cret -out " +
        q("ec.enc.key"));
    writeFile("garbage.key",
              "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n");
    writeFile("empty.pem", "");
  }

  void makeCa(const std::string& name, const std::string& cn) const {
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
        q(name + ".key") + " -out " + q(name + ".pem") + " -days 2 -subj " + q("/CN=" + cn));
  }

  std::string q(const std::string& name) const {
    return "'" + (name.rfind("/", 0) == 0 ? name : path(name)) + "'";
  }

  static void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
      throw std::runtime_error("failed: " + command);
    }
  }

  std::string dir_;
};

// Server options with the test certificate `name` (name.pem, name.key).
inline spry::TlsOptions serverOptions(const std::string& name = "ec") {
  const auto& c = TlsCerts::get();
  spry::TlsOptions o;
  o.certFile = c.path(name + ".pem");
  o.keyFile = c.path(name + ".key");
  return o;
}

}  // namespace spry_test
