"""The one public exception, carrying libvirt's (code, domain, level, message).

Every layer raises :class:`libvirtError`; over RPC it travels as libvirt's
``remote_error`` struct, so virsh prints our messages unchanged.  The numeric
values are libvirt's (``virErrorNumber``, ``virErrorDomain``, ``virErrorLevel``)
and are ABI: they never change.

Messages follow libvirt's convention of a fixed prefix per error code followed
by the detail ("Domain not found: no domain with matching name 'x'"); build
them with :func:`error` so that the prefix table lives in one place.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorNumber(IntEnum):
    """virErrorNumber (only the values pyvirt raises or clients key on)."""

    OK = 0
    INTERNAL_ERROR = 1
    NO_MEMORY = 2
    NO_SUPPORT = 3
    UNKNOWN_HOST = 4
    NO_CONNECT = 5
    INVALID_CONN = 6
    INVALID_DOMAIN = 7
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    GET_FAILED = 10
    POST_FAILED = 11
    HTTP_ERROR = 12
    SEXPR_SERIAL = 13
    NO_XEN = 14
    XEN_CALL = 15
    OS_TYPE = 16
    NO_KERNEL = 17
    NO_ROOT = 18
    NO_SOURCE = 19
    NO_TARGET = 20
    NO_NAME = 21
    NO_OS = 22
    NO_DEVICE = 23
    NO_XENSTORE = 24
    DRIVER_FULL = 25
    CALL_FAILED = 26
    XML_ERROR = 27
    DOM_EXIST = 28
    OPERATION_DENIED = 29
    OPEN_FAILED = 30
    READ_FAILED = 31
    PARSE_FAILED = 32
    CONF_SYNTAX = 33
    WRITE_FAILED = 34
    XML_DETAIL = 35
    INVALID_NETWORK = 36
    NETWORK_EXIST = 37
    SYSTEM_ERROR = 38
    RPC = 39
    NO_DOMAIN = 42
    NO_NETWORK = 43
    AUTH_FAILED = 45
    INVALID_STORAGE_POOL = 46
    INVALID_STORAGE_VOL = 47
    NO_STORAGE_POOL = 49
    NO_STORAGE_VOL = 50
    NO_NODE_DEVICE = 53
    OPERATION_INVALID = 55
    NO_INTERFACE = 57
    MULTIPLE_INTERFACES = 59
    CONFIG_UNSUPPORTED = 67
    OPERATION_TIMEOUT = 68
    MIGRATE_PERSIST_FAILED = 69
    OVERFLOW = 70
    INVALID_DOMAIN_SNAPSHOT = 71
    NO_DOMAIN_SNAPSHOT = 72
    INVALID_STREAM = 73
    ARGUMENT_UNSUPPORTED = 74
    STORAGE_PROBE_FAILED = 75
    STORAGE_POOL_BUILT = 76
    SNAPSHOT_REVERT_RISKY = 77
    OPERATION_ABORTED = 78
    AUTH_CANCELLED = 79
    NO_DOMAIN_METADATA = 80
    MIGRATE_UNSAFE = 81
    BLOCK_COPY_ACTIVE = 83
    OPERATION_UNSUPPORTED = 84
    RESOURCE_BUSY = 87
    ACCESS_DENIED = 88
    STORAGE_VOL_EXIST = 90
    XML_INVALID_SCHEMA = 92
    MIGRATE_FINISH_OK = 93
    DEVICE_MISSING = 99
    INVALID_DOMAIN_CHECKPOINT = 102
    NO_DOMAIN_CHECKPOINT = 103
    CHECKPOINT_INCONSISTENT = 109


class ErrorDomain(IntEnum):
    """virErrorDomain: which part of the system raised the error."""

    NONE = 0
    XEN = 1
    XEND = 2
    XENSTORE = 3
    SEXPR = 4
    XML = 5
    DOM = 6
    RPC = 7
    PROXY = 8
    CONF = 9
    QEMU = 10
    NET = 11
    TEST = 12
    REMOTE = 13
    STORAGE = 18
    NETWORK = 19
    DOMAIN = 20
    NODEDEV = 22
    SECURITY = 24
    INTERFACE = 26
    CPU = 31
    DOMAIN_SNAPSHOT = 35
    STREAMS = 38
    LOCKING = 42
    URI = 45
    AUTH = 46
    LOCKSPACE = 51
    ACCESS = 55
    DOMAIN_CHECKPOINT = 69


class ErrorLevel(IntEnum):
    NONE = 0
    WARNING = 1
    ERROR = 2


# libvirt's per-code message prefix (virErrorMsg).  "%s" is the detail.
_PREFIX: dict[ErrorNumber, str] = {
    ErrorNumber.INTERNAL_ERROR: "internal error: %s",
    ErrorNumber.NO_MEMORY: "out of memory: %s",
    ErrorNumber.NO_SUPPORT: "this function is not supported by the connection driver: %s",
    ErrorNumber.NO_CONNECT: "no connection driver available for %s",
    ErrorNumber.INVALID_CONN: "invalid connection pointer in %s",
    ErrorNumber.INVALID_DOMAIN: "invalid domain pointer in %s",
    ErrorNumber.INVALID_ARG: "invalid argument: %s",
    ErrorNumber.OPERATION_FAILED: "operation failed: %s",
    ErrorNumber.NO_NAME: "missing name information in %s",
    ErrorNumber.XML_ERROR: "XML error: %s",
    ErrorNumber.DOM_EXIST: "operation failed: %s",
    ErrorNumber.OPERATION_DENIED: "operation forbidden: %s",
    ErrorNumber.XML_DETAIL: "XML error: %s",
    ErrorNumber.SYSTEM_ERROR: "%s",
    ErrorNumber.RPC: "%s",
    ErrorNumber.INVALID_NETWORK: "invalid network pointer in %s",
    ErrorNumber.NETWORK_EXIST: "this network exists already: %s",
    ErrorNumber.NO_DOMAIN: "Domain not found: %s",
    ErrorNumber.NO_NETWORK: "Network not found: %s",
    ErrorNumber.XML_INVALID_SCHEMA: "XML document failed to validate against schema: %s",
    ErrorNumber.AUTH_FAILED: "authentication failed: %s",
    ErrorNumber.INVALID_STORAGE_POOL: "invalid storage pool pointer in %s",
    ErrorNumber.INVALID_STORAGE_VOL: "invalid storage volume pointer in %s",
    ErrorNumber.NO_STORAGE_POOL: "Storage pool not found: %s",
    ErrorNumber.NO_STORAGE_VOL: "Storage volume not found: %s",
    ErrorNumber.NO_NODE_DEVICE: "Node device not found: %s",
    ErrorNumber.NO_INTERFACE: "Interface not found: %s",
    ErrorNumber.STORAGE_PROBE_FAILED: "Storage pool probe failed: %s",
    ErrorNumber.STORAGE_POOL_BUILT: "Storage pool already built: %s",
    ErrorNumber.STORAGE_VOL_EXIST: "storage volume %s exists already",
    ErrorNumber.OPERATION_INVALID: "Requested operation is not valid: %s",
    ErrorNumber.CONFIG_UNSUPPORTED: "unsupported configuration: %s",
    ErrorNumber.NO_SOURCE: "missing source information for device %s",
    ErrorNumber.OPERATION_TIMEOUT: "Timed out during operation: %s",
    ErrorNumber.MIGRATE_PERSIST_FAILED: "Failed to make domain persistent after migration: %s",
    ErrorNumber.INVALID_DOMAIN_SNAPSHOT: "Invalid snapshot: %s",
    ErrorNumber.NO_DOMAIN_SNAPSHOT: "Domain snapshot not found: %s",
    ErrorNumber.INVALID_STREAM: "invalid stream pointer in %s",
    ErrorNumber.ARGUMENT_UNSUPPORTED: "argument unsupported: %s",
    ErrorNumber.SNAPSHOT_REVERT_RISKY: "revert requires force: %s",
    ErrorNumber.OPERATION_ABORTED: "operation aborted: %s",
    ErrorNumber.NO_DOMAIN_METADATA: "metadata not found: %s",
    ErrorNumber.MIGRATE_UNSAFE: "Unsafe migration: %s",
    ErrorNumber.OVERFLOW: "value too large: %s",
    ErrorNumber.BLOCK_COPY_ACTIVE: "block copy still active: %s",
    ErrorNumber.OPERATION_UNSUPPORTED: "Operation not supported: %s",
    ErrorNumber.RESOURCE_BUSY: "resource busy: %s",
    ErrorNumber.ACCESS_DENIED: "access denied: %s",
    ErrorNumber.MIGRATE_FINISH_OK: "migration successfully aborted: %s",
    ErrorNumber.DEVICE_MISSING: "device not found: %s",
    ErrorNumber.INVALID_DOMAIN_CHECKPOINT: "Invalid domain checkpoint: %s",
    ErrorNumber.NO_DOMAIN_CHECKPOINT: "Domain checkpoint not found: %s",
    ErrorNumber.CHECKPOINT_INCONSISTENT: "checkpoint inconsistent: %s",
}


class libvirtError(Exception):  # noqa: N801 - libvirt-python's public name
    """An error as libvirt reports it: code, domain, level and message.

    ``err`` holds the same 9-tuple libvirt-python exposes
    ``(code, domain, message, level, str1, str2, str3, int1, int2)``.
    """

    def __init__(
        self,
        message: str,
        code: int = ErrorNumber.INTERNAL_ERROR,
        domain: int = ErrorDomain.NONE,
        level: int = ErrorLevel.ERROR,
        str1: str | None = None,
        str2: str | None = None,
        str3: str | None = None,
        int1: int = -1,
        int2: int = -1,
    ) -> None:
        super().__init__(message)
        self.err = (int(code), int(domain), message, int(level), str1, str2, str3, int1, int2)

    def get_error_code(self) -> int:
        return self.err[0]

    def get_error_domain(self) -> int:
        return self.err[1]

    def get_error_message(self) -> str:
        return self.err[2]

    def get_error_level(self) -> int:
        return self.err[3]

    def get_str1(self) -> str | None:
        return self.err[4]

    def get_str2(self) -> str | None:
        return self.err[5]

    def get_str3(self) -> str | None:
        return self.err[6]

    def get_int1(self) -> int:
        return self.err[7]

    def get_int2(self) -> int:
        return self.err[8]

    @property
    def code(self) -> int:
        return self.err[0]

    @property
    def domain(self) -> int:
        return self.err[1]

    def __repr__(self) -> str:
        return f"libvirtError(code={self.err[0]}, domain={self.err[1]}, {self.err[2]!r})"


def bare_invalid_arg(message: str, domain: ErrorDomain = ErrorDomain.NONE) -> libvirtError:
    """INVALID_ARG with the bare message, no "invalid argument: " prefix: libvirt's
    virReportInvalidArg / virCheckNonNullArg and the API's mutually-exclusive checks."""
    return libvirtError(message, ErrorNumber.INVALID_ARG, domain, ErrorLevel.ERROR)


def error(code: ErrorNumber, domain: ErrorDomain, detail: str) -> libvirtError:
    """Build an error whose message carries libvirt's prefix for ``code``.

    ``str1`` holds the format and ``str2`` the detail, as libvirtd fills them.
    """
    fmt = _PREFIX.get(code, "%s")
    return libvirtError(fmt % detail, code, domain, ErrorLevel.ERROR, fmt, detail, None)


def no_name(domain: ErrorDomain = ErrorDomain.DOMAIN) -> libvirtError:
    """libvirt's VIR_ERR_NO_NAME reported without a detail: the code's bare message,
    which libvirtd also puts in str1."""
    message = "missing name information"
    return libvirtError(message, ErrorNumber.NO_NAME, domain, ErrorLevel.ERROR, message)


def no_support(domain: ErrorDomain, what: str) -> libvirtError:
    return error(ErrorNumber.NO_SUPPORT, domain, what)


def no_domain(detail: str, domain: ErrorDomain = ErrorDomain.QEMU) -> libvirtError:
    return error(ErrorNumber.NO_DOMAIN, domain, detail)


def invalid_arg(detail: str, domain: ErrorDomain = ErrorDomain.NONE) -> libvirtError:
    return error(ErrorNumber.INVALID_ARG, domain, detail)


def operation_invalid(detail: str, domain: ErrorDomain = ErrorDomain.QEMU) -> libvirtError:
    return error(ErrorNumber.OPERATION_INVALID, domain, detail)


def unsupported_flags(flags: int, function: str, domain: ErrorDomain = ErrorDomain.QEMU) -> libvirtError:
    """libvirt's virCheckFlags error for flags a call does not know: INVALID_ARG, its
    message bare (virReportInvalidArg gives no "invalid argument: " prefix)."""
    return libvirtError(f"unsupported flags (0x{flags:x}) in function {function}", ErrorNumber.INVALID_ARG,
                        domain, ErrorLevel.ERROR, function, "flags", None, 0, 0)


def check_flags(flags: int, allowed: int, function: str, domain: ErrorDomain = ErrorDomain.QEMU) -> None:
    unknown = flags & ~allowed
    if unknown:
        raise unsupported_flags(unknown, function, domain)


def wrap(exc: BaseException, code: ErrorNumber = ErrorNumber.INTERNAL_ERROR,
         domain: ErrorDomain = ErrorDomain.NONE, doing: str = "") -> libvirtError:
    """Turn any exception into a libvirtError, keeping it as the cause."""
    if isinstance(exc, libvirtError):
        return exc
    detail = f"{doing}: {exc}" if doing else str(exc) or type(exc).__name__
    err = error(code, domain, detail)
    err.__cause__ = exc
    return err


class FirstError:
    """Keeps the first error of a multi-step operation.

    Later errors (typically from cleanup) are logged and dropped, so the
    caller always sees what went wrong first::

        first = FirstError()
        try:
            step()
        except libvirtError as e:
            first.record(e)
        cleanup_errors_are_logged_via(first.record)
        first.raise_if_any()
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        else:
            import logging      # here only: logging costs every command-line call its import
            logging.getLogger(__name__).warning("ignoring later error after %s: %s", self.error, exc)

    def __bool__(self) -> bool:
        return self.error is not None

    def raise_if_any(self) -> None:
        if self.error is not None:
            raise self.error


# Words libvirt's API names spell in capitals (virDomainGetXMLDesc, virDomainLookupByUUID).
_API_WORDS = {"xml": "XML", "uuid": "UUID", "id": "ID", "fd": "FD", "cpu": "CPU", "dhcp": "DHCP", "mac": "MAC"}


def api_name(method: str) -> str:
    """The public libvirt function behind a driver method, as libvirt's messages name it."""
    return "vir" + "".join(_API_WORDS.get(part, part.capitalize()) for part in method.split("_"))
