/*
 * tiny: a kernel-less multiboot (v1) test guest for pyvirt.
 *
 * Booted by QEMU's multiboot loader (-kernel tiny.elf).  It initialises
 * COM1, prints a ready marker and then either halts for good (idle mode)
 * or keeps dirtying guest memory at a fixed rate while printing a
 * heartbeat line about once per second (dirty mode).
 *
 * Command line (multiboot cmdline, QEMU -append), space separated tokens:
 *   dirty=MIB:RATE  rewrite one 32-bit word in every 4 KiB page of the
 *                   first MIB MiB of the first multiboot module (-initrd),
 *                   RATE MiB/s worth of pages, paced by the TSC.  Without a
 *                   module, the guest's own RAM from 2 MiB up is used.
 *   heartbeat       print heartbeats without dirtying anything.
 *   marker=TEXT     print TEXT instead of PYVIRT-GUEST-READY.
 *   pace=hlt|poll   how to wait between bursts of writes: `hlt` sleeps
 *                   until the next 100 Hz PIT interrupt (cheap for the
 *                   host), `poll` spins on the TSC with interrupts off.
 *                   Default: hlt under TCG, poll under any other
 *                   hypervisor (KVM's instruction emulator, which runs
 *                   this paging-less guest on some hosts, cannot IRET).
 *
 * Output lines on COM1 (all end with CR LF):
 *   PYVIRT-TINY ...            one informational line (TSC rate, region)
 *   PYVIRT-GUEST-READY         ready marker (or the marker= text)
 *   PYVIRT-HEARTBEAT N         N = 1, 2, 3, ... about once per second
 *   PYVIRT-GUEST-FAULT V       CPU exception V happened; the guest halted
 */

#include <stdint.h>
#include <stddef.h>

#define MB_BOOT_MAGIC 0x2BADB002u

#define MBI_FLAG_MEM     (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS    (1u << 3)

struct mb_info {
    uint32_t flags;       /*  0 */
    uint32_t mem_lower;   /*  4: KiB below 1 MiB */
    uint32_t mem_upper;   /*  8: KiB above 1 MiB */
    uint32_t boot_device; /* 12 */
    uint32_t cmdline;     /* 16 */
    uint32_t mods_count;  /* 20 */
    uint32_t mods_addr;   /* 24 */
};

struct mb_module {
    uint32_t mod_start;
    uint32_t mod_end;
    uint32_t string;
    uint32_t reserved;
};

#define COM1 0x3f8
#define PIT_HZ 1193182u
#define TICK_HZ 100u
#define PAGE_SIZE 4096u
#define MIB (1024u * 1024u)
#define OWN_RAM_BASE (2u * MIB)
#define MAX_RATE_MIB 65536u

/* Shared with entry.S. */
volatile uint32_t timer_ticks;
extern const uint32_t isr_fault_table[32];
extern void isr_timer(void);
extern void isr_ignore(void);
extern void isr_ignore_slave(void);
extern char _end[];

/* gcc may emit calls to these even in freestanding code. */
void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static inline void outb(uint16_t port, uint8_t val)
{
    __asm__ volatile("outb %0, %1" : : "a"(val), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t val;
    __asm__ volatile("inb %1, %0" : "=a"(val) : "Nd"(port));
    return val;
}

static inline void cpuid(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid"
                     : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(0));
}

/* Hypervisor vendor signature (CPUID 0x40000000), "" on bare metal. */
static void hypervisor_signature(char out[13])
{
    uint32_t r[4];
    out[0] = 0;
    cpuid(1, r);
    if (!(r[2] & (1u << 31)))
        return;
    cpuid(0x40000000u, r);
    memcpy(out, &r[1], 4);
    memcpy(out + 4, &r[2], 4);
    memcpy(out + 8, &r[3], 4);
    out[12] = 0;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/*
 * TCG dirty-tracking workaround.
 *
 * QEMU releases before 9.0 do not reset TCG's softmmu TLB when a migration
 * pass clears the dirty bitmap (the fast path of
 * cpu_physical_memory_sync_dirty_bitmap), so a write through a TLB entry
 * filled before that pass does not mark the page dirty again: a page the
 * guest keeps hot in its TLB (our stack) stops being re-sent and arrives
 * stale on the destination.  Dropping the entry (INVLPG, which TCG honours
 * with paging off too) makes the next access refill it, and a refill of a
 * clean page re-arms the dirty trap.  So under TCG we drop the entries of
 * our own writable pages at the top of every loop iteration and right
 * before HLT, and the entry of each module page right before writing it.
 */
extern char _writable_start[], _writable_end[];

static inline void tlb_drop_page(const volatile void *p)
{
    __asm__ volatile("invlpg (%0)" : : "r"(p) : "memory");
}

static inline void tlb_drop_own_pages(void)
{
    for (uint32_t a = (uint32_t)_writable_start & ~(PAGE_SIZE - 1);
         a < (uint32_t)_writable_end; a += PAGE_SIZE)
        tlb_drop_page((const void *)a);
}

/* Sleep with IF=1 until the next interrupt.  With `drop`, first drop our
 * own pages from the TLB, touching no memory between that and HLT, so the
 * interrupt frame pushed on wake-up goes through a fresh TLB entry. */
static inline void idle_until_interrupt(int drop)
{
    if (drop) {
        uint32_t a = (uint32_t)_writable_start & ~(PAGE_SIZE - 1);
        __asm__ volatile("1: invlpg (%0)\n\t"
                         "add $4096, %0\n\t"
                         "cmp %1, %0\n\t"
                         "jb 1b\n\t"
                         "sti\n\t"
                         "hlt"
                         : "+r"(a)
                         : "r"((uint32_t)_writable_end)
                         : "memory", "cc");
    } else {
        __asm__ volatile("sti; hlt" : : : "memory");
    }
}

/* ---- 16550 UART on COM1 ------------------------------------------------ */

static void uart_init(void)
{
    outb(COM1 + 1, 0x00); /* IER: no interrupts */
    outb(COM1 + 3, 0x80); /* LCR: DLAB on */
    outb(COM1 + 0, 0x01); /* divisor 1 = 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* LCR: 8N1, DLAB off */
    outb(COM1 + 2, 0xC7); /* FCR: enable and clear FIFOs */
    outb(COM1 + 4, 0x03); /* MCR: DTR | RTS, OUT2 off (no IRQ) */
}

static void uart_putc(char c)
{
    /* wait for THR empty; bounded so a missing UART cannot hang us */
    for (uint32_t i = 0; i < 1000000u && !(inb(COM1 + 5) & 0x20); i++)
        __asm__ volatile("pause");
    outb(COM1, (uint8_t)c);
}

static void puts_raw(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void put_eol(void)
{
    uart_putc('\r');
    uart_putc('\n');
}

static void put_dec(uint64_t v)
{
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    while (i)
        uart_putc(buf[--i]);
}

static void put_hex(uint32_t v)
{
    puts_raw("0x");
    for (int shift = 28; shift >= 0; shift -= 4)
        uart_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

void tiny_fault(uint32_t vector)
{
    puts_raw("PYVIRT-GUEST-FAULT ");
    put_dec(vector);
    put_eol();
}

/* ---- interrupts: IDT, 8259 PIC, PIT channel 0 ------------------------- */

struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t zero;
    uint8_t type;
    uint16_t off_hi;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(8)));

static void idt_set(int vec, uint32_t handler)
{
    idt[vec].off_lo = (uint16_t)handler;
    idt[vec].sel = 0x08;
    idt[vec].zero = 0;
    idt[vec].type = 0x8E; /* present, ring 0, 32-bit interrupt gate */
    idt[vec].off_hi = (uint16_t)(handler >> 16);
}

static void idt_init(void)
{
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) desc;

    for (int v = 0; v < 256; v++)
        idt_set(v, (uint32_t)isr_ignore);
    for (int v = 0; v < 32; v++)
        idt_set(v, isr_fault_table[v]);
    idt_set(2, (uint32_t)isr_ignore); /* NMI: ignore */
    idt_set(0x20, (uint32_t)isr_timer);
    for (int v = 0x28; v < 0x30; v++)
        idt_set(v, (uint32_t)isr_ignore_slave);
    desc.limit = sizeof(idt) - 1;
    desc.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(desc));
}

/* Remap the PICs to vectors 0x20..0x2f; unmask only `master_unmask`. */
static void pic_init(uint8_t master_mask)
{
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20);
    outb(0xA1, 0x28);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, master_mask);
    outb(0xA1, 0xFF);
}

static void pit_periodic(uint32_t hz)
{
    uint32_t div = PIT_HZ / hz;
    outb(0x43, 0x34); /* channel 0, lo/hi byte, mode 2 (rate generator) */
    outb(0x40, (uint8_t)div);
    outb(0x40, (uint8_t)(div >> 8));
}

/* ---- TSC calibration against PIT channel 2 ----------------------------- */

/* One measurement: TSC cycles for `latch` PIT ticks, 0 on failure. */
static uint64_t tsc_cycles_for_pit(uint16_t latch)
{
    uint64_t t0, t1;
    uint32_t loops = 0;

    /* gate high, speaker off */
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
    /* channel 2, lo/hi byte, mode 0 (interrupt on terminal count) */
    outb(0x43, 0xB0);
    outb(0x42, (uint8_t)latch);
    outb(0x42, (uint8_t)(latch >> 8));
    t0 = rdtsc();
    while (!(inb(0x61) & 0x20)) {
        if (++loops > 200000000u)
            return 0;
    }
    t1 = rdtsc();
    outb(0x61, (uint8_t)(inb(0x61) & ~0x03));
    return t1 > t0 ? t1 - t0 : 0;
}

/* TSC rate in Hz: median of three 20 ms measurements; 0 if unusable. */
static uint64_t calibrate_tsc(void)
{
    const uint16_t latch = PIT_HZ / 50; /* 20 ms */
    uint64_t m[3], t;

    for (int i = 0; i < 3; i++)
        m[i] = tsc_cycles_for_pit(latch);
    if (m[0] > m[1]) { t = m[0]; m[0] = m[1]; m[1] = t; }
    if (m[1] > m[2]) { t = m[1]; m[1] = m[2]; m[2] = t; }
    if (m[0] > m[1]) { t = m[0]; m[0] = m[1]; m[1] = t; }
    t = m[1] * PIT_HZ / latch;
    if (t < 10000000ull || t > 100000000000ull) /* 10 MHz .. 100 GHz */
        return 0;
    return t;
}

/* ---- command line -------------------------------------------------------- */

enum { PACE_AUTO, PACE_HLT, PACE_POLL };

struct options {
    int dirty;            /* dirty=... seen and well formed */
    uint32_t dirty_mib;
    uint32_t rate_mib;
    int heartbeat;
    int pace;             /* PACE_AUTO, PACE_HLT or PACE_POLL */
    const char *marker;   /* points into the cmdline, not NUL terminated */
    uint32_t marker_len;
};

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int starts_with(const char *tok, uint32_t len, const char *prefix)
{
    uint32_t i;
    for (i = 0; prefix[i]; i++)
        if (i >= len || tok[i] != prefix[i])
            return 0;
    return 1;
}

/* Parse a decimal number; returns chars consumed, 0 if none. */
static uint32_t parse_u32(const char *s, uint32_t len, uint32_t *out)
{
    uint32_t i = 0;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (uint32_t)(s[i] - '0');
        if (v > 0xffffffffull)
            v = 0xffffffffull;
        i++;
    }
    *out = (uint32_t)v;
    return i;
}

static void parse_cmdline(const char *cmd, struct options *o)
{
    const char *p = cmd;

    while (*p) {
        const char *tok;
        uint32_t len = 0;

        while (*p && is_space(*p))
            p++;
        tok = p;
        while (*p && !is_space(*p))
            p++, len++;
        if (!len)
            break;

        if (starts_with(tok, len, "dirty=")) {
            const char *v = tok + 6;
            uint32_t vlen = len - 6, n, m;
            n = parse_u32(v, vlen, &o->dirty_mib);
            if (n && n < vlen && v[n] == ':' &&
                (m = parse_u32(v + n + 1, vlen - n - 1, &o->rate_mib)) &&
                n + 1 + m == vlen) {
                o->dirty = 1;
            } else {
                puts_raw("PYVIRT-TINY bad dirty= argument (want dirty=MIB:RATE)");
                put_eol();
                o->dirty = 0;
            }
        } else if (len == 9 && starts_with(tok, len, "heartbeat")) {
            o->heartbeat = 1;
        } else if (len == 8 && starts_with(tok, len, "pace=hlt")) {
            o->pace = PACE_HLT;
        } else if (len == 9 && starts_with(tok, len, "pace=poll")) {
            o->pace = PACE_POLL;
        } else if (starts_with(tok, len, "marker=") && len > 7) {
            o->marker = tok + 7;
            o->marker_len = len - 7;
        }
    }
}

/* ---- main ------------------------------------------------------------------ */

static void halt_forever(void)
{
    outb(0x21, 0xFF); /* mask every IRQ */
    outb(0xA1, 0xFF);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void tiny_main(uint32_t magic, uint32_t mbi_addr)
{
    const struct mb_info *mbi = (const struct mb_info *)mbi_addr;
    struct options opt = {0};
    uint32_t base = 0, len = 0, pages = 0, pages_per_sec = 0;
    uint64_t tsc_hz;
    char hv[13];
    int use_hlt, is_tcg;

    uart_init();
    idt_init();
    pic_init(0xFF); /* everything masked until we want the timer */

    if (magic != MB_BOOT_MAGIC) {
        puts_raw("PYVIRT-TINY not started by a multiboot loader, magic ");
        put_hex(magic);
        put_eol();
        mbi = 0;
    }

    if (mbi && (mbi->flags & MBI_FLAG_CMDLINE) && mbi->cmdline)
        parse_cmdline((const char *)mbi->cmdline, &opt);

    hypervisor_signature(hv);
    {
        const char *tcg = "TCGTCGTCGTCG";
        is_tcg = 1;
        for (int i = 0; i < 12; i++)
            if (hv[i] != tcg[i])
                is_tcg = 0;
    }
    if (opt.pace == PACE_AUTO) {
        use_hlt = is_tcg;
    } else {
        use_hlt = opt.pace == PACE_HLT;
    }

    tsc_hz = calibrate_tsc();
    if (!tsc_hz) {
        puts_raw("PYVIRT-TINY TSC calibration failed, assuming 1 GHz");
        put_eol();
        tsc_hz = 1000000000ull;
    }

    if (opt.dirty && opt.dirty_mib && opt.rate_mib) {
        uint32_t cap = opt.dirty_mib > 4095 ? 4095u * MIB : opt.dirty_mib * MIB;
        if (mbi && (mbi->flags & MBI_FLAG_MODS) && mbi->mods_count) {
            const struct mb_module *mod = (const struct mb_module *)mbi->mods_addr;
            base = (mod->mod_start + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
            len = mod->mod_end > base ? mod->mod_end - base : 0;
        } else if (mbi && (mbi->flags & MBI_FLAG_MEM)) {
            /* no module: our own RAM from 2 MiB up to the top of the
             * contiguous RAM above 1 MiB; nothing of ours lives there */
            uint32_t top = MIB + mbi->mem_upper * 1024u;
            uint32_t lo = OWN_RAM_BASE;
            if ((uint32_t)_end > lo)
                lo = ((uint32_t)_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
            base = lo;
            len = top > lo ? top - lo : 0;
        }
        if (len > cap)
            len = cap;
        pages = len / PAGE_SIZE;
        if (pages)
            pages_per_sec = (opt.rate_mib > MAX_RATE_MIB ? MAX_RATE_MIB : opt.rate_mib) *
                            (MIB / PAGE_SIZE);
    }

    puts_raw("PYVIRT-TINY tsc_khz=");
    put_dec(tsc_hz / 1000);
    if (mbi && (mbi->flags & MBI_FLAG_MEM)) {
        puts_raw(" mem_upper_kib=");
        put_dec(mbi->mem_upper);
    }
    puts_raw(" hv=");
    puts_raw(hv[0] ? hv : "none");
    puts_raw(" modules=");
    put_dec(mbi && (mbi->flags & MBI_FLAG_MODS) ? mbi->mods_count : 0);
    if (pages) {
        puts_raw(" dirty_base=");
        put_hex(base);
        puts_raw(" dirty_pages=");
        put_dec(pages);
        puts_raw(" rate_pages_per_s=");
        put_dec(pages_per_sec);
    } else {
        puts_raw(" dirty=off");
    }
    if (pages || opt.heartbeat || opt.dirty)
        puts_raw(use_hlt ? " pace=hlt" : " pace=poll");
    put_eol();

    if (opt.marker) {
        for (uint32_t i = 0; i < opt.marker_len; i++)
            uart_putc(opt.marker[i]);
    } else {
        puts_raw("PYVIRT-GUEST-READY");
    }
    put_eol();

    if (!pages && !opt.heartbeat && !opt.dirty)
        halt_forever();

    /* Heartbeat / dirty loop.  Time is split into one-second windows of
     * TSC cycles; inside a window we write until the number of pages
     * written matches the elapsed fraction of the window, then sleep until
     * the next 100 Hz timer tick (or spin, with pace=poll).  A backlog is never carried over more
     * than one window, and a long stall (VM paused, migration downtime) or
     * a TSC that went backwards restarts the window. */
    if (use_hlt) {
        pit_periodic(TICK_HZ);
        pic_init(0xFE); /* only IRQ0 */
        __asm__ volatile("sti");
    }
    {
        volatile uint32_t *mem = (volatile uint32_t *)base;
        const uint32_t words_per_page = PAGE_SIZE / 4;
        uint32_t cursor = 0, value = 0x5a5a0000u;
        uint64_t win = rdtsc(), done = 0, beats = 0;

        for (;;) {
            uint64_t now;

            if (is_tcg)
                tlb_drop_own_pages();
            now = rdtsc();
            uint64_t el;

            if (now < win) {
                win = now;
                done = 0;
            }
            el = now - win;
            if (el >= tsc_hz) {
                beats++;
                puts_raw("PYVIRT-HEARTBEAT ");
                put_dec(beats);
                put_eol();
                if (el >= 3 * tsc_hz) {
                    win = now;
                    done = 0;
                } else {
                    win += tsc_hz;
                    done = done > pages_per_sec ? done - pages_per_sec : 0;
                }
                continue;
            }
            if (pages_per_sec) {
                uint64_t target = el * pages_per_sec / tsc_hz;
                if (done < target) {
                    uint64_t n = target - done;
                    if (n > 64)
                        n = 64; /* short bursts: re-check the clock and
                                 * drop our TLB entries often */
                    for (uint32_t i = 0; i < (uint32_t)n; i++) {
                        volatile uint32_t *w = &mem[cursor * words_per_page];
                        if (is_tcg)
                            tlb_drop_page(w);
                        *w = ++value;
                        if (++cursor == pages)
                            cursor = 0;
                    }
                    done += n;
                    continue;
                }
            }
            if (use_hlt)
                idle_until_interrupt(is_tcg); /* wakes on the next tick */
            else
                __asm__ volatile("pause");
        }
    }
}
