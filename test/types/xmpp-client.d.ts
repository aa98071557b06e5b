// Minimal typings for @xmpp/client (the package ships none): what the tests use.
declare module "@xmpp/client" {
  import { EventEmitter } from "node:events";
  import type { Element } from "@xmpp/xml";

  export interface StreamManagement extends EventEmitter {
    id: string;
    enabled: boolean;
    timeout: number;
    requestAckInterval: number;
  }

  export interface Client extends EventEmitter {
    jid: { toString(): string; local: string; domain: string; resource: string } | null;
    status: string;
    socket: (EventEmitter & { socket?: import("node:net").Socket | null }) | null;
    options: Record<string, unknown>;
    reconnect: EventEmitter & { delay: number; stop(): void };
    streamManagement: StreamManagement;
    iqCaller: { request(el: Element, timeout?: number): Promise<Element>; get(el: Element, to?: string, timeout?: number): Promise<Element> };
    headerElement(): Element;
    start(): Promise<unknown>;
    stop(): Promise<void>;
    send(...el: Element[]): Promise<void>;
    disconnect(timeout?: number): Promise<void>;
  }

  export function client(options: {
    service: string;
    domain: string;
    username?: string;
    password?: string;
    resource?: string;
    credentials?: unknown;
    timeout?: number;
  }): Client;
  export { xml, jid } from "@xmpp/xml";
}
