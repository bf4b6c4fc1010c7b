// libvirt numbers used by the TypeScript side. They are part of libvirt's stable ABI; the tests
// compare them with the `constants` the addon reads from the headers it was built against.

/** virDomainXMLFlags */
export const VIR_DOMAIN_XML_SECURE = 1 << 0;
export const VIR_DOMAIN_XML_INACTIVE = 1 << 1;

/** virDomainDefineFlags */
export const VIR_DOMAIN_DEFINE_VALIDATE = 1 << 0;

/** virConnectListAllNodeDeviceFlags */
export const VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV = 1 << 1;
export const VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV = 1 << 2;
export const VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET = 1 << 4;

/** virErrorNumber */
export const VIR_ERR_NO_SUPPORT = 3;
export const VIR_ERR_NO_DOMAIN = 42;
export const VIR_ERR_NO_NODE_DEVICE = 53;

/** virErrorDomain */
export const VIR_FROM_TEST = 12;
export const VIR_FROM_NODEDEV = 22;
