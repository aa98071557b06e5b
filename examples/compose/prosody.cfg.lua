-- A Prosody node behind xmpp-lb (compose.yaml): both nodes read this file.
-- TLS ends at the balancer, which speaks plaintext to the nodes on the compose network: the nodes
-- must not require encryption, and must take PLAIN without it (SCRAM works either way).

log = { info = "*console" }

modules_enabled = { "disco", "roster", "saslauth", "tls", "ping", "smacks", "carbons", "version", "blocklist", "private", "vcard4" }
modules_disabled = { "s2s" }

c2s_ports = { 5222 }
c2s_interfaces = { "*" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
-- Channel binding (-PLUS) cannot hold across a balancer that ends TLS.
disable_sasl_mechanisms = { "DIGEST-MD5", "SCRAM-SHA-1-PLUS" }
authentication = "internal_hashed"

VirtualHost "localhost"
