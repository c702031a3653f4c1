#pragma once
/// TLS for a listener (https, wss): certificates, client verification, SNI,
/// session tickets. Files are PEM; every one is read when the listener starts
/// and again on a reload.

#include <chrono>
#include <string>
#include <vector>

namespace spry {

/// The oldest protocol version a TLS listener accepts.
enum class TlsVersion {
  k1_2,  ///< TLS 1.2 and 1.3 (default)
  k1_3,  ///< TLS 1.3 only
};

/// A certificate served to clients that ask for `name` (SNI).
struct TlsServerName {
  /// Host name, matched without regard to case: "api.example.com", or
  /// "*.example.com" for any one label in its place (an exact name wins).
  std::string name{};
  std::string certFile{};       ///< PEM certificate chain, leaf first
  std::string keyFile{};        ///< PEM private key (RSA or EC) of that certificate
  std::string keyPassphrase{};  ///< for an encrypted keyFile; empty: the key is not encrypted
};

/// A TLS listener. Errors in these files or settings throw from listen() with
/// a message that names the file and gives OpenSSL's reason.
struct TlsOptions {
  std::string certFile{};       ///< PEM certificate chain, leaf first; the default certificate
  std::string keyFile{};        ///< PEM private key (RSA or EC) of certFile
  std::string keyPassphrase{};  ///< for an encrypted keyFile; empty: the key is not encrypted
  /// PEM certificates of the CAs that client certificates must chain to
  /// (with verifyClient).
  std::string caFile{};
  /// Ask every client for a certificate and refuse the handshake without a
  /// valid one (mutual TLS). Needs caFile.
  bool verifyClient = false;
  TlsVersion minVersion = TlsVersion::k1_2;  ///< oldest version accepted
  std::string ciphers{};       ///< TLS 1.2 cipher list (OpenSSL syntax); empty: OpenSSL's default
  std::string cipherSuites{};  ///< TLS 1.3 suites (OpenSSL syntax); empty: OpenSSL's default
  /// Further certificates chosen by the client's server name (SNI); a client
  /// that names none of them, or no name, gets certFile.
  std::vector<TlsServerName> serverNames{};
  /// Session tickets (resumption without a full handshake) are encrypted with
  /// keys shared by every loop of the process and replaced this often; a
  /// ticket stays good for twice as long. A reload keeps the keys. 0 turns
  /// resumption off.
  std::chrono::seconds ticketKeyRotation = std::chrono::hours(1);
};

/// The certificate a client presented (with verifyClient).
struct TlsPeerCertificate {
  std::string subject{};  ///< RFC 2253 form: "CN=alice,O=Example"
  std::string pem{};      ///< the certificate in PEM
};

}  // namespace spry
