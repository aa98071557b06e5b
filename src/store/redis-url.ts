import { parseHostPort, type HostPort } from "../cluster/address.js";
import { ConfigError } from "../errors.js";

interface Credentials {
  /** ACL user (Redis 6+); absent: the default user. */
  username?: string;
  password?: string;
}

/** Where Redis is and how to log in, read from a `--store` URL. */
export type RedisTarget =
  | ({ kind: "standalone"; server: HostPort; tls: boolean; db: number } & Credentials)
  | ({ kind: "sentinel"; sentinels: HostPort[]; masterName: string; db: number } & Credentials)
  | ({ kind: "cluster"; nodes: HostPort[] } & Credentials);

const SHAPES =
  "redis://[:password@]host:port[/db], rediss://… (TLS), redis-sentinel://[:password@]host:port,…/mastername[/db] or redis-cluster://[:password@]host:port,…";
const URL_PARTS = /^([a-z-]+):\/\/(?:([^@/]*)@)?([^/?#]*)(?:\/([^?#]*))?$/i;

/**
 * Parses a Redis store URL. Throws a ConfigError with one sentence when it is
 * not usable; the password never appears in the message.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const shown = url.replace(/\/\/[^@/]*@/, "//***@");
  const fail = (why: string): ConfigError => new ConfigError(`--store: '${shown}' is not a usable Redis URL: ${why}`);
  const parts = URL_PARTS.exec(url.trim());
  if (parts === null) throw fail(`expected ${SHAPES}`);
  const [, scheme = "", userinfo, hostList = "", path = ""] = parts;

  if (hostList === "") throw fail("no host given");
  const credentials = parseCredentials(userinfo, fail);
  const hosts = (defaultPort: number): HostPort[] =>
    hostList.split(",").map((text) => {
      const hp = parseHostPort(text, defaultPort);
      if (hp === null || hp.port === 0) throw fail(`'${text}' is not host:port`);
      return hp;
    });
  const db = (text: string | undefined): number => {
    if (text === undefined || text === "") return 0;
    if (!/^\d{1,5}$/.test(text)) throw fail(`the database '${text}' is not a number`);
    return Number(text);
  };

  switch (scheme.toLowerCase()) {
    case "redis":
    case "rediss": {
      const [server, ...more] = hosts(6379);
      if (server === undefined || more.length > 0) throw fail("give exactly one host:port (redis-sentinel:// or redis-cluster:// take several)");
      if (path.includes("/")) throw fail("the path is only the database number");
      return { kind: "standalone", server, tls: scheme.toLowerCase() === "rediss", db: db(path), ...credentials };
    }
    case "redis-sentinel": {
      const [masterName, dbText, ...rest] = path.split("/");
      if (!masterName || rest.length > 0) throw fail("the path must be /mastername or /mastername/db");
      return { kind: "sentinel", sentinels: hosts(26379), masterName, db: db(dbText), ...credentials };
    }
    case "redis-cluster":
      if (path !== "") throw fail("a cluster has no database number or path");
      return { kind: "cluster", nodes: hosts(6379), ...credentials };
    default:
      throw fail(`unknown scheme '${scheme}:', expected ${SHAPES}`);
  }
}

/** `user:password`, `:password` or `user`, percent-decoded. */
function parseCredentials(userinfo: string | undefined, fail: (why: string) => ConfigError): Credentials {
  if (userinfo === undefined) return {};
  const colon = userinfo.indexOf(":");
  const [user, password] = colon === -1 ? [userinfo, undefined] : [userinfo.slice(0, colon), userinfo.slice(colon + 1)];
  try {
    const credentials: Credentials = {};
    if (user !== "") credentials.username = decodeURIComponent(user);
    if (password !== undefined && password !== "") credentials.password = decodeURIComponent(password);
    return credentials;
  } catch {
    throw fail("the user or password is not valid percent-encoding");
  }
}
