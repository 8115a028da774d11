"""Keyboard codesets of libvirt's send-key (virKeycodeSet) and their translation to QEMU's numbers.

QEMU's ``send-key`` takes "qnum" keycodes: the XT keyboard (PC set 1)
scancode, an 0xe0-prefixed code given as 0x80 plus its second byte.
libvirt accepts eleven codesets and translates each keycode to qnum; the
table below is the public keycode map (keycodemapdb's) that libvirt builds
its tables from, one row per Linux keycode, so every codeset translates
through it.  Names are accepted, as virsh does, for the linux codeset
(``KEY_A``), os_x (numbers only here) and win32 (numbers only here).
"""

from __future__ import annotations

from .enums import KeycodeSet


# virsh's codeset names (virKeycodeSetTypeToString); "rfb" is libvirt's old name of qnum.
CODESET_NAMES: dict[str, KeycodeSet] = {
    "linux": KeycodeSet.LINUX, "xt": KeycodeSet.XT, "atset1": KeycodeSet.ATSET1,
    "atset2": KeycodeSet.ATSET2, "atset3": KeycodeSet.ATSET3, "os_x": KeycodeSet.OSX,
    "xt_kbd": KeycodeSet.XT_KBD, "usb": KeycodeSet.USB, "win32": KeycodeSet.WIN32,
    "qnum": KeycodeSet.QNUM, "rfb": KeycodeSet.QNUM,
}
SEND_KEY_MAX_KEYS = 16     # VIR_DOMAIN_SEND_KEY_MAX_KEYS

# name, linux, os_x, atset1, atset2, atset3, xt, xt_kbd, usb, win32 (empty: no code in that set)
_TABLE = """\
KEY_ESC,1,0x35,1,118,8,1,1,41,0x1b
KEY_1,2,0x12,2,22,22,2,2,30,0x31
KEY_2,3,0x13,3,30,30,3,3,31,0x32
KEY_3,4,0x14,4,38,38,4,4,32,0x33
KEY_4,5,0x15,5,37,37,5,5,33,0x34
KEY_5,6,0x17,6,46,46,6,6,34,0x35
KEY_6,7,0x16,7,54,54,7,7,35,0x36
KEY_7,8,0x1a,8,61,61,8,8,36,0x37
KEY_8,9,0x1c,9,62,62,9,9,37,0x38
KEY_9,10,0x19,10,70,70,10,10,38,0x39
KEY_0,11,0x1d,11,69,69,11,11,39,0x30
KEY_MINUS,12,0x1b,12,78,78,12,12,45,0xbd
KEY_EQUAL,13,0x18,13,85,85,13,13,46,0xbb
KEY_BACKSPACE,14,0x33,14,102,102,14,14,42,0x08
KEY_TAB,15,0x30,15,13,13,15,15,43,0x09
KEY_Q,16,0xc,16,21,21,16,16,20,0x51
KEY_W,17,0xd,17,29,29,17,17,26,0x57
KEY_E,18,0xe,18,36,36,18,18,8,0x45
KEY_R,19,0xf,19,45,45,19,19,21,0x52
KEY_T,20,0x11,20,44,44,20,20,23,0x54
KEY_Y,21,0x10,21,53,53,21,21,28,0x59
KEY_U,22,0x20,22,60,60,22,22,24,0x55
KEY_I,23,0x22,23,67,67,23,23,12,0x49
KEY_O,24,0x1f,24,68,68,24,24,18,0x4f
KEY_P,25,0x23,25,77,77,25,25,19,0x50
KEY_LEFTBRACE,26,0x21,26,84,84,26,26,47,0xdb
KEY_RIGHTBRACE,27,0x1e,27,91,91,27,27,48,0xdd
KEY_ENTER,28,0x24,28,90,90,28,28,40,0x0d
KEY_LEFTCTRL,29,0x3b,29,20,17,29,29,224,0xa2
KEY_A,30,0x0,30,28,28,30,30,4,0x41
KEY_S,31,0x1,31,27,27,31,31,22,0x53
KEY_D,32,0x2,32,35,35,32,32,7,0x44
KEY_F,33,0x3,33,43,43,33,33,9,0x46
KEY_G,34,0x5,34,52,52,34,34,10,0x47
KEY_H,35,0x4,35,51,51,35,35,11,0x48
KEY_J,36,0x26,36,59,59,36,36,13,0x4a
KEY_K,37,0x28,37,66,66,37,37,14,0x4b
KEY_L,38,0x25,38,75,75,38,38,15,0x4c
KEY_SEMICOLON,39,0x29,39,76,76,39,39,51,0xba
KEY_APOSTROPHE,40,0x27,40,82,82,40,40,52,0xde
KEY_GRAVE,41,0x32,41,14,14,41,41,53,0xc0
KEY_LEFTSHIFT,42,0x38,42,18,18,42,42,225,0xa0
KEY_BACKSLASH,43,0x2a,43,93,93,43,43,50,0xdc
KEY_Z,44,0x6,44,26,26,44,44,29,0x5a
KEY_X,45,0x7,45,34,34,45,45,27,0x58
KEY_C,46,0x8,46,33,33,46,46,6,0x43
KEY_V,47,0x9,47,42,42,47,47,25,0x56
KEY_B,48,0xb,48,50,50,48,48,5,0x42
KEY_N,49,0x2d,49,49,49,49,49,17,0x4e
KEY_M,50,0x2e,50,58,58,50,50,16,0x4d
KEY_COMMA,51,0x2b,51,65,65,51,51,54,0xbc
KEY_DOT,52,0x2f,52,73,73,52,52,55,0xbe
KEY_SLASH,53,0x2c,53,74,74,53,53,56,0xbf
KEY_RIGHTSHIFT,54,0x3c,54,89,89,54,54,229,0xa1
KEY_KPASTERISK,55,0x43,55,124,126,55,55,85,0x6a
KEY_LEFTALT,56,0x3a,56,17,25,56,56,226,0xa4
KEY_SPACE,57,0x31,57,41,41,57,57,44,0x20
KEY_CAPSLOCK,58,0x39,58,88,20,58,58,57,0x14
KEY_F1,59,0x7a,59,5,7,59,59,58,0x70
KEY_F2,60,0x78,60,6,15,60,60,59,0x71
KEY_F3,61,0x63,61,4,23,61,61,60,0x72
KEY_F4,62,0x76,62,12,31,62,62,61,0x73
KEY_F5,63,0x60,63,3,39,63,63,62,0x74
KEY_F6,64,0x61,64,11,47,64,64,63,0x75
KEY_F7,65,0x62,65,259,55,65,65,64,0x76
KEY_F8,66,0x64,66,10,63,66,66,65,0x77
KEY_F9,67,0x65,67,1,71,67,67,66,0x78
KEY_F10,68,0x6d,68,9,79,68,68,67,0x79
KEY_NUMLOCK,69,,69,119,118,69,69,83,0x90
KEY_SCROLLLOCK,70,,70,126,95,70,70,71,0x91
KEY_KP7,71,0x59,71,108,108,71,71,95,0x67
KEY_KP8,72,0x5b,72,117,117,72,72,96,0x68
KEY_KP9,73,0x5c,73,125,125,73,73,97,0x69
KEY_KPMINUS,74,0x4e,74,123,132,74,74,86,0x6d
KEY_KP4,75,0x56,75,107,107,75,75,92,0x64
KEY_KP5,76,0x57,76,115,115,76,76,93,0x65
KEY_KP6,77,0x58,77,116,116,77,77,94,0x66
KEY_KPPLUS,78,0x45,78,121,124,78,78,87,0x6b
KEY_KP1,79,0x53,79,105,105,79,79,89,0x61
KEY_KP2,80,0x54,80,114,114,80,80,90,0x62
KEY_KP3,81,0x55,81,122,122,81,81,91,0x63
KEY_KP0,82,0x52,82,112,112,82,82,98,0x60
KEY_KPDOT,83,0x41,83,113,113,83,83,99,0x6e
,84,,,,,,84,,
KEY_ZENKAKUHANKAKU,85,,118,95,,,118,148,
KEY_102ND,86,,86,97,19,,86,100,0xe1
KEY_F11,87,0x67,87,120,86,101,87,68,0x7a
KEY_F12,88,0x6f,88,7,94,102,88,69,0x7b
KEY_RO,89,,115,81,,,115,135,
KEY_KATAKANA,90,0x68,120,99,,,120,146,0x15
KEY_HIRAGANA,91,,119,98,,,119,147,
KEY_HENKAN,92,,121,100,134,,121,138,
KEY_KATAKANAHIRAGANA,93,,112,19,135,,112,136,
KEY_MUHENKAN,94,,123,103,133,,123,139,
KEY_KPJPCOMMA,95,0x5f,92,39,,,92,140,
KEY_KPENTER,96,0x4c,,158,121,,284,88,
KEY_RIGHTCTRL,97,0x3e,,,88,,285,228,0xa3
KEY_KPSLASH,98,0x4b,,181,119,,309,84,0x6f
KEY_SYSRQ,99,,84,260,87,,84,70,0x2c
KEY_RIGHTALT,100,0x3d,,,57,,312,230,0xa5
KEY_LINEFEED,101,,,,,,91,,
KEY_HOME,102,0x73,,224,110,,327,74,0x24
KEY_UP,103,0x7e,,236,99,109,328,82,0x26
KEY_PAGEUP,104,0x74,,201,111,,329,75,0x21
KEY_LEFT,105,0x7b,,203,97,111,331,80,0x25
KEY_RIGHT,106,0x7c,,205,106,112,333,79,0x27
KEY_END,107,0x77,,225,101,,335,77,0x23
KEY_DOWN,108,0x7d,,254,96,110,336,81,0x28
KEY_PAGEDOWN,109,0x79,,243,109,,337,78,0x22
KEY_INSERT,110,,,210,103,107,338,73,0x2d
KEY_DELETE,111,0x75,,244,100,108,339,76,0x2e
KEY_MACRO,112,,,239,142,,367,,
KEY_MUTE,113,0x4a,,251,156,,288,239,0xad
KEY_VOLUMEDOWN,114,0x49,,,157,,302,238,0xae
KEY_VOLUMEUP,115,0x48,,233,149,,304,237,0xaf
KEY_POWER,116,,,,,,350,102,
KEY_KPEQUAL,117,0x51,89,15,,,89,103,
KEY_KPPLUSMINUS,118,,,206,,,334,,
KEY_PAUSE,119,,,198,98,,326,72,0x13
KEY_SCALE,120,,,,,,267,,
KEY_KPCOMMA,121,0x47,126,109,,,126,133,0x6c
KEY_HANGEUL,122,,,,,,,144,0x15
KEY_HANJA,123,,,,,,269,145,0x19
KEY_YEN,124,0x5d,125,106,,,125,137,
KEY_LEFTMETA,125,0x37,,,139,,347,227,0x5b
KEY_RIGHTMETA,126,,,,140,,348,231,0x5c
KEY_COMPOSE,127,0x3f,,,141,,349,101,0x5d
KEY_STOP,128,,,,10,,360,243,0xa9
KEY_AGAIN,129,,,,11,,261,121,
KEY_PROPS,130,,,,12,,262,118,
KEY_UNDO,131,,,,16,,263,122,
KEY_FRONT,132,,,,,,268,119,
KEY_COPY,133,,,,24,,376,124,
KEY_OPEN,134,,,,32,,100,116,
KEY_PASTE,135,,,,40,,101,125,
KEY_FIND,136,,,,48,,321,244,
KEY_CUT,137,,,,56,,316,123,
KEY_HELP,138,,,,9,,373,117,0x2f
KEY_MENU,139,,,,145,,286,,
KEY_CALC,140,,,174,163,,289,251,
KEY_SETUP,141,,,,,,102,,
KEY_SLEEP,142,,,,,,351,248,0x5f
KEY_WAKEUP,143,,,,,,355,,
KEY_FILE,144,,,,,,103,,
KEY_SENDFILE,145,,,,,,104,,
KEY_DELETEFILE,146,,,,,,105,,
KEY_XFER,147,,,,162,,275,,
KEY_PROG1,148,,,,160,,287,,
KEY_PROG2,149,,,,161,,279,,
KEY_WWW,150,,,,,,258,240,
KEY_MSDOS,151,,,,,,106,,
KEY_SCREENLOCK,152,,,,150,,274,249,
KEY_DIRECTION,153,,,,,,107,,
KEY_CYCLEWINDOWS,154,,,,155,,294,,
KEY_MAIL,155,,,,,,364,,
KEY_BOOKMARKS,156,,,,,,358,,
KEY_COMPUTER,157,,,,,,363,,
KEY_BACK,158,,,,,,362,241,0xa6
KEY_FORWARD,159,,,,,,361,242,0xa7
KEY_CLOSECD,160,,,,154,,291,,
KEY_EJECTCD,161,,,,,,108,236,
KEY_EJECTCLOSECD,162,,,,,,381,,
KEY_NEXTSONG,163,,,241,147,,281,235,0xb0
KEY_PLAYPAUSE,164,,,173,,,290,232,0xb3
KEY_PREVIOUSSONG,165,,,250,148,,272,234,0xb1
KEY_STOPCD,166,,,164,152,,292,233,0xb2
KEY_RECORD,167,,,,158,,305,,
KEY_REWIND,168,,,,159,,280,,
KEY_PHONE,169,,,,,,99,,
KEY_ISO,170,0xa,,,,,112,,
KEY_CONFIG,171,,,,,,257,,
KEY_HOMEPAGE,172,,,178,151,,306,,0xac
KEY_REFRESH,173,,,,,,359,250,0xa8
KEY_EXIT,174,,,,,,113,,
KEY_MOVE,175,,,,,,114,,
KEY_EDIT,176,,,,,,264,247,
KEY_SCROLLUP,177,,,,,,117,245,
KEY_SCROLLDOWN,178,,,,,,271,246,
KEY_KPLEFTPAREN,179,,,,,,374,182,
KEY_KPRIGHTPAREN,180,,,,,,379,183,
KEY_NEW,181,,,,,,265,,
KEY_REDO,182,,,,,,266,,
KEY_F13,183,0x69,93,47,127,,93,104,0x7c
KEY_F14,184,0x6b,94,55,128,,94,105,0x7d
KEY_F15,185,0x71,95,63,129,,95,106,0x7e
KEY_F16,186,0x6a,,,130,,85,107,0x7f
KEY_F17,187,0x40,,,131,,259,108,0x80
KEY_F18,188,0x4f,,,,,375,109,0x81
KEY_F19,189,0x50,,,,,260,110,0x82
KEY_F20,190,0x5a,,,,,90,111,0x83
KEY_F21,191,,,,,,116,112,0x84
KEY_F22,192,,,,,,377,113,0x85
KEY_F23,193,,,,,,109,114,0x86
KEY_F24,194,,,,,,111,115,0x87
,195,,,,,,277,,
,196,,,,,,278,,
,197,,,,,,282,,
,198,,,,,,283,,
,199,,,,,,295,,
KEY_PAUSECD,201,,,,,,297,,
KEY_PROG3,202,,,,,,299,,
KEY_PROG4,203,,,,,,300,,
KEY_DASHBOARD,204,,,,,,301,,
KEY_SUSPEND,205,,,,,,293,,
KEY_CLOSE,206,,,,,,303,,
KEY_PLAY,207,,,,,,307,,0xfa
KEY_FASTFORWARD,208,,,,,,308,,
KEY_BASSBOOST,209,,,,,,310,,
KEY_PRINT,210,,,,,,313,,0x2a
KEY_HP,211,,,,,,314,,
KEY_CAMERA,212,,,,,,315,,
KEY_SOUND,213,,,,,,317,,
KEY_QUESTION,214,,,,,,318,,
KEY_EMAIL,215,,,,,,319,,0xb4
KEY_CHAT,216,,,,,,320,,
KEY_SEARCH,217,,,,,,357,,0xaa
KEY_CONNECT,218,,,,,,322,,
KEY_FINANCE,219,,,,,,323,,
KEY_SPORT,220,,,,,,324,,
KEY_SHOP,221,,,,,,325,,
KEY_ALTERASE,222,,,,,,276,,
KEY_CANCEL,223,,,,,,330,,
KEY_BRIGHTNESSDOWN,224,,,,,,332,,
KEY_BRIGHTNESSUP,225,,,,,,340,,
KEY_MEDIA,226,,,,,,365,,
KEY_SWITCHVIDEOMODE,227,,,,,,342,,
KEY_KBDILLUMTOGGLE,228,,,,,,343,,
KEY_KBDILLUMDOWN,229,,,,,,344,,
KEY_KBDILLUMUP,230,,,,,,345,,
KEY_SEND,231,,,,,,346,,
KEY_REPLY,232,,,,,,356,,
KEY_FORWARDMAIL,233,,,,,,270,,
KEY_SAVE,234,,,,,,341,,
KEY_DOCUMENTS,235,,,,,,368,,
KEY_BATTERY,236,,,,,,369,,
KEY_BLUETOOTH,237,,,,,,370,,
KEY_WLAN,238,,,,,,371,,
KEY_UWB,239,,,,,,372,,
"""
# Codes a second virtual key of Windows gives the same key (VK_SHIFT, VK_CONTROL, VK_MENU).
_WIN32_ALIASES = {0x10: 42, 0x11: 29, 0x12: 56}
_COLUMNS = (KeycodeSet.OSX, KeycodeSet.ATSET1, KeycodeSet.ATSET2, KeycodeSet.ATSET3, KeycodeSet.XT,
            KeycodeSet.XT_KBD, KeycodeSet.USB, KeycodeSet.WIN32)


def _build() -> tuple[dict[KeycodeSet, dict[int, int]], dict[int, int], dict[str, int]]:
    """(codeset -> {code: linux keycode}, {linux keycode: qnum}, {linux name: keycode})."""
    to_linux: dict[KeycodeSet, dict[int, int]] = {s: {} for s in KeycodeSet}
    linux_to_qnum: dict[int, int] = {}
    names: dict[str, int] = {"KEY_SHIFT": 42}
    for line in _TABLE.splitlines():
        name, linux_text, *codes = line.split(",")
        linux = int(linux_text, 0)
        to_linux[KeycodeSet.LINUX][linux] = linux
        if name:
            names[name] = linux
        for codeset, text in zip(_COLUMNS, codes):
            if text:
                to_linux[codeset].setdefault(int(text, 0), linux)
                if codeset == KeycodeSet.XT_KBD:
                    linux_to_qnum.setdefault(linux, xt_kbd_to_qnum(int(text, 0)))
    to_linux[KeycodeSet.WIN32].update(_WIN32_ALIASES)
    return to_linux, linux_to_qnum, names


def xt_kbd_to_qnum(code: int) -> int:
    """An XT keyboard code (0x1NN for the 0xe0-prefixed NN) as QEMU's number."""
    return 0x80 | (code & 0x7F) if code > 0xFF else code


_TO_LINUX, _LINUX_TO_QNUM, LINUX_NAMES = _build()


def to_qnum(codeset: int, keycode: int) -> int | None:
    """``keycode`` of ``codeset`` as QEMU's number, or None where the key has none."""
    if codeset == KeycodeSet.QNUM:
        return keycode        # libvirt passes QEMU's own numbers through untranslated
    linux = _TO_LINUX.get(KeycodeSet(codeset), {}).get(keycode)
    return None if linux is None else _LINUX_TO_QNUM.get(linux)


def from_name(codeset: int, name: str) -> int | None:
    """A key name of ``codeset`` (virsh's virKeycodeValueFromString): linux names only."""
    if codeset == KeycodeSet.LINUX:
        return LINUX_NAMES.get(name)
    return None


__all__ = ["KeycodeSet", "CODESET_NAMES", "SEND_KEY_MAX_KEYS", "LINUX_NAMES", "to_qnum", "from_name",
           "xt_kbd_to_qnum"]
