import type { Element } from "@xmpp/xml";
import { loginOfferXml, type LoginOffer } from "./login-offer.js";
import { NS_SASL, NS_TLS } from "./namespaces.js";

/** `<stream:features/>` of the pre-auth dialogue: STARTTLS before TLS, what to log in with after. */
export function featuresXml(opts: { starttls: "required" | "optional" | "none"; offer: LoginOffer }): string {
  let inner = "";
  if (opts.starttls !== "none") {
    inner += `<starttls xmlns='${NS_TLS}'>${opts.starttls === "required" ? "<required/>" : ""}</starttls>`;
  }
  return `<stream:features>${inner}${loginOfferXml(opts.offer)}</stream:features>`;
}

/** The SASL mechanisms a peer's `<stream:features/>` offers. */
export function saslMechanismsOf(features: Element): string[] {
  return features.getChild("mechanisms", NS_SASL)?.getChildren("mechanism").map((m) => m.getText().trim()) ?? [];
}
