// Minimal typings for @xmpp/xml (the package ships none): only what the balancer uses.
declare module "@xmpp/xml" {
  import { EventEmitter } from "node:events";

  export class Element {
    constructor(name: string, attrs?: Record<string, string> | string);
    name: string;
    attrs: Record<string, string | undefined>;
    parent: Element | null;
    children: Array<Element | string>;
    is(name: string, xmlns?: string): boolean;
    getName(): string;
    getNS(): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getText(): string;
    getChildText(name: string, xmlns?: string): string | null;
    text(): string;
    toString(): string;
    /** Removes a child element, or the children of that name (and namespace). */
    remove(el: Element | string, xmlns?: string): this;
    append(...nodes: Array<Element | string>): this;
    prepend(...nodes: Array<Element | string>): this;
  }

  export class Parser extends EventEmitter {
    constructor();
    root: Element | null;
    cursor: Element | null;
    write(data: string): void;
    end(data?: string): void;
    onStartElement(name: string, attrs: Record<string, string>): void;
    onText(str: string): void;
  }

  export class XMLError extends Error {}

  export function escapeXML(s: string): string;
  export function escapeXMLText(s: string): string;
  export function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: Array<Element | string>): Element;
  export default xml;
}
