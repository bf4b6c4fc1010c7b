import { InvariantError } from '../../model/errors.js';
import { faultPoint } from '../../model/faults.js';
import type { DefinitionStore } from '../../model/ports.js';
import { LibvirtConnection, type LibvirtOpenOptions } from './connection.js';
import { VIR_ERR_NO_DOMAIN } from './constants.js';
import { LazyConnection } from './lazy-connection.js';
import { isLibvirtErrorCode } from './libvirt-error.js';

export type LibvirtConnectionFactory = () => Promise<LibvirtConnection>;

/**
 * Persistent domain definitions through libvirt, for CLI commands only: looking up a domain while
 * libvirt runs its hook hangs forever. The connection is opened on first use; close() it when done.
 */
export class LibvirtDefinitionStore implements DefinitionStore {
  private readonly connection: LazyConnection<LibvirtConnection>;

  /** `connect`: a libvirt URI (e.g. qemu:///system), or a function that opens the connection. */
  constructor(connect: string | LibvirtConnectionFactory, options: LibvirtOpenOptions = {}) {
    this.connection = new LazyConnection(
      typeof connect === 'string' ? () => LibvirtConnection.open(connect, options) : connect,
    );
  }

  static forUri(uri: string, options: LibvirtOpenOptions = {}): LibvirtDefinitionStore {
    return new LibvirtDefinitionStore(uri, options);
  }

  /**
   * The persistent definition, with secrets when the connection may read them (read-write), so
   * that it can be defined back unchanged; null when the domain is not defined.
   */
  async persistentXml(domain: string): Promise<{ xml: string; source: string } | null> {
    const connection = await this.open();
    const dom = await this.lookup(connection, domain);
    if (!dom) return null;
    const xml = await dom.xml({ inactive: true, secure: !connection.readOnly });
    return { xml, source: `libvirt ${connection.uri}` };
  }

  /** false for a domain that is not defined. */
  async isActive(domain: string): Promise<boolean> {
    const dom = await this.lookup(await this.open(), domain);
    return dom ? dom.isActive() : false;
  }

  async define(domain: string, xml: string): Promise<void> {
    const defined = await (await this.open()).defineDomain(xml);
    faultPoint('define');
    // The name comes from the XML: a mismatch means the caller handed the wrong document.
    if (defined.name !== domain) {
      throw new InvariantError(`asked to define domain "${domain}" but the XML defined "${defined.name}"`);
    }
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  private async lookup(connection: LibvirtConnection, domain: string) {
    try {
      return await connection.domain(domain);
    } catch (err) {
      if (isLibvirtErrorCode(err, VIR_ERR_NO_DOMAIN)) return null;
      throw err;
    }
  }

  private open(): Promise<LibvirtConnection> {
    return this.connection.get();
  }
}
