"""The guest's clock and power-management options: ``-rtc``, the PIT's and HPET's
``-global``/``-no-hpet``, and the S3/S4 ``-global``s, as libvirt 9.0 writes them
(qemuBuildClockArgStr, qemuBuildPMCommandLine) from ``<clock>``'s timers and ``<pm>``.
Timers libvirt would turn into CPU flags or hypervisor clocks are refused: the
guest would not be the one its XML describes.  Pure, like :mod:`.command`.
"""

from __future__ import annotations

from ...conf import DomainDef, pciaddr
from ...errors import ErrorDomain, ErrorNumber, error


def _unsupported(detail: str) -> Exception:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU, detail)


# <timer name='rtc'>: QEMU's -rtc suboptions (qemuBuildClockArgStr)
_RTC_TICKPOLICY = {"catchup": ",driftfix=slew", "delay": ""}
_RTC_TRACK = {"guest": ",clock=vm", "wall": ",clock=rt"}
# <timer name='pit' tickpolicy>: the in-kernel PIT's lost_tick_policy
_PIT_TICKPOLICY = {"delay": "delay", "catchup": "slew", "discard": "discard"}


def rtc_option(d: DomainDef) -> str:
    out = f"base={'localtime' if d.clock_offset == 'localtime' else 'utc'}"
    for timer in d.timers:
        if timer.name != "rtc":
            continue
        if timer.tickpolicy is not None and timer.tickpolicy not in _RTC_TICKPOLICY:
            raise _unsupported(f"unsupported rtc timer tickpolicy '{timer.tickpolicy}'")
        if timer.track is not None and timer.track not in _RTC_TRACK:
            raise _unsupported(f"unsupported rtc timer track '{timer.track}'")
        out += _RTC_TRACK.get(timer.track or "", "") + _RTC_TICKPOLICY.get(timer.tickpolicy or "", "")
    return out


def timer_options(d: DomainDef) -> list[str]:
    """The PIT's tick policy and the HPET's presence, as libvirt writes them; the timers it
    would turn into CPU flags or hypervisor clocks are refused (the guest would differ)."""
    args: list[str] = []
    for timer in d.timers:
        if timer.name == "rtc":
            continue
        if timer.name == "pit" and timer.present is None and timer.track is None:
            if timer.tickpolicy is not None:
                if timer.tickpolicy not in _PIT_TICKPOLICY:
                    raise _unsupported(f"unsupported pit tickpolicy '{timer.tickpolicy}'")
                args += ["-global", f"kvm-pit.lost_tick_policy={_PIT_TICKPOLICY[timer.tickpolicy]}"]
        elif timer.name == "hpet" and timer.tickpolicy is None and timer.track is None:
            if timer.present == "no":
                args.append("-no-hpet")
        else:
            raise _unsupported(f"timer '{timer.name}' with these settings is not supported")
    return args


def pm_globals(d: DomainDef) -> list[str]:
    """<pm>: the ACPI S3/S4 states of the machine's power-management device."""
    device = "ICH9-LPC" if pciaddr.is_q35(d) else "PIIX4_PM"
    args: list[str] = []
    for state, sn in (("suspend-to-mem", "s3"), ("suspend-to-disk", "s4")):
        if state in d.pm:
            args += ["-global", f"{device}.disable_{sn}={1 if d.pm[state] == 'no' else 0}"]
    return args
