import { Element } from "@xmpp/xml";

/** A deep copy of an element (@xmpp/xml has no clone of its own): what is rewritten for one client leaves the shared original alone. */
export function cloneElement(el: Element): Element {
  const copy = new Element(el.name, { ...el.attrs } as Record<string, string>);
  for (const child of el.children) copy.append(typeof child === "string" ? child : cloneElement(child));
  return copy;
}
