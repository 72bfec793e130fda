//! In-kernel vGICv3 (placeholder; being written).
