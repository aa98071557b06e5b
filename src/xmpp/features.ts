import { escapeXMLText, type Element } from "@xmpp/xml";
import { NS_SASL, NS_TLS } from "./namespaces.js";

/** `<stream:features/>` of the pre-auth dialogue: STARTTLS before TLS, SASL mechanisms after. */
export function featuresXml(opts: { starttls: "required" | "optional" | "none"; mechanisms: readonly string[] }): string {
  let inner = "";
  if (opts.starttls !== "none") {
    inner += `<starttls xmlns='${NS_TLS}'>${opts.starttls === "required" ? "<required/>" : ""}</starttls>`;
  }
  if (opts.mechanisms.length > 0) {
    inner += `<mechanisms xmlns='${NS_SASL}'>${opts.mechanisms.map((m) => `<mechanism>${escapeXMLText(m)}</mechanism>`).join("")}</mechanisms>`;
  }
  return `<stream:features>${inner}</stream:features>`;
}

/** The SASL mechanisms a peer's `<stream:features/>` offers. */
export function saslMechanismsOf(features: Element): string[] {
  return features.getChild("mechanisms", NS_SASL)?.getChildren("mechanism").map((m) => m.getText().trim()) ?? [];
}
