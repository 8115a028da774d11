/*
 * Entry point of the tiny multiboot (v1) test guest.
 *
 * The boot loader (QEMU's -kernel multiboot loader) jumps to _start in
 * 32-bit protected mode with paging off, EAX = 0x2BADB002 and EBX = the
 * physical address of the multiboot information structure.  The loader's
 * GDT is not guaranteed to stay valid, so we load our own flat GDT first.
 *
 * This file also holds the interrupt stubs (the C code fills the IDT).
 */

        .set MB_MAGIC, 0x1BADB002
        /* bit 0: page-align modules, bit 1: provide memory information */
        .set MB_FLAGS, 0x00000003
        .set MB_CHECKSUM, -(MB_MAGIC + MB_FLAGS)

        .set KERNEL_CS, 0x08
        .set KERNEL_DS, 0x10

        .section .multiboot, "a"
        .p2align 2
        .long MB_MAGIC
        .long MB_FLAGS
        .long MB_CHECKSUM

        .section .text
        .code32
        .globl _start
        .type _start, @function
_start:
        cli
        cld
        lgdt gdt_desc
        ljmp $KERNEL_CS, $1f
1:      movw $KERNEL_DS, %cx
        movw %cx, %ds
        movw %cx, %es
        movw %cx, %fs
        movw %cx, %gs
        movw %cx, %ss
        movl $stack_top, %esp
        xorl %ebp, %ebp
        /* keep the stack 16-byte aligned at the call (i386 SysV ABI) */
        subl $8, %esp
        pushl %ebx              /* multiboot info address */
        pushl %eax              /* boot loader magic */
        call tiny_main
2:      cli
        hlt
        jmp 2b

/* IRQ0 (PIT channel 0, remapped to vector 0x20): count the tick, EOI. */
        .globl isr_timer
isr_timer:
        pushl %eax
        incl timer_ticks
        movb $0x20, %al
        outb %al, $0x20
        popl %eax
        iret

/* Anything else that may show up unasked (spurious IRQ7, NMI): ignore. */
        .globl isr_ignore
isr_ignore:
        iret

/* Spurious IRQ15 from the slave PIC: the master still wants its EOI. */
        .globl isr_ignore_slave
isr_ignore_slave:
        pushl %eax
        movb $0x20, %al
        outb %al, $0x20
        popl %eax
        iret

/* CPU exceptions 0..31: report the vector on COM1 and halt for good.
 * The faulting stack may be unusable, so the vector goes through a global
 * and the handler runs on a fresh stack. */
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
isr_fault_\n:
        cli
        movl $\n, fault_vector
        jmp fault_common
        .endr

fault_common:
        movl $stack_top, %esp
        subl $12, %esp
        pushl fault_vector
        call tiny_fault
4:      cli
        hlt
        jmp 4b

        .section .rodata
        .p2align 2
        .globl isr_fault_table
isr_fault_table:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .long isr_fault_\n
        .endr

        .p2align 3
gdt:
        .quad 0x0000000000000000        /* null */
        /* accessed bits preset, so the CPU never writes to this table */
        .quad 0x00CF9B000000FFFF        /* 0x08: flat 4 GiB code, ring 0 */
        .quad 0x00CF93000000FFFF        /* 0x10: flat 4 GiB data, ring 0 */
gdt_end:
        .p2align 2
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .p2align 4
stack_bottom:
        .skip 16384
stack_top:
        .p2align 2
        .globl fault_vector
fault_vector:
        .skip 4

        .section .note.GNU-stack, "", @progbits
