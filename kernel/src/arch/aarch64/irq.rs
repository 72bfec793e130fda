//! Where an interrupt goes: the IPI and the tick to the scheduler, passed-through PPIs to the
//! guest that owns them, device lines to the user-space driver that holds them. The GIC driver
//! (`gic.rs`) only acknowledges and ends them.

use super::{cpu, gic, timer, virt};
use crate::kernel::Kernel;
use crate::percpu;

/// Handles every pending interrupt on `cpu` (from an IRQ vector, IRQs masked). `kernel` is the
/// locked kernel state once user space exists.
pub fn handle_irq(mut kernel: Option<&mut Kernel>, cpu: usize) {
    while let Some(intid) = gic::acknowledge() {
        dispatch(kernel.as_deref_mut(), cpu, intid);
        gic::end(intid);
    }
}

fn dispatch(kernel: Option<&mut Kernel>, cpu: usize, intid: u32) {
    if intid == gic::SGI_IPI {
        percpu::get(cpu).count_ipi();
        // Someone queued a thread here or killed the one running: look again.
        if let Some(k) = kernel {
            k.cpus[cpu].need_resched = true;
        }
    } else if intid == timer::tick_intid() {
        let fired = timer::fired(cpu);
        if fired.tick {
            percpu::get(cpu).count_tick();
        }
        match kernel {
            Some(k) => {
                if k.timer_fired(cpu, cpu::counter(), fired.tick) {
                    k.cpus[cpu].need_resched = true;
                }
                timer::rearm(cpu, if fired.deadline { k.next_deadline(cpu) } else { None });
            }
            None => timer::rearm(cpu, None),
        }
    } else if crate::hal::PASSED_PPIS.contains(&intid) {
        if let Some(k) = kernel {
            k.guest_ppi_fired(cpu, intid);
        } else {
            gic::disable_private(cpu, intid);
        }
    } else if intid == virt::MAINTENANCE_PPI {
        // The list registers need attention: the exit path reads and refills them.
    } else if let Some(k) = kernel.filter(|k| k.irqs.contains_key(&intid)) {
        // A device line user space owns: mask it until the driver acknowledges, and signal.
        gic::mask_device_irq(intid);
        k.irq_fired(intid);
    } else {
        gic::mask_device_irq(intid);
        log::warn!("interrupt {intid} has no handler; masked it");
    }
}
