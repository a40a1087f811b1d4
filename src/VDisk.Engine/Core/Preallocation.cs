// Preallocation modes with qemu-img's meanings (DESIGN.md "Formats"; qemu-img create -o preallocation).
namespace VDisk.Engine.Core;

/// <summary>How much host space a new image reserves up front.</summary>
public enum Preallocation
{
    /// <summary>Sparse: nothing reserved.</summary>
    Off,
    /// <summary>Metadata (tables) written for the whole disk; data clusters left sparse (qcow2 only).</summary>
    Metadata,
    /// <summary>Host space reserved with fallocate; content reads as zero.</summary>
    Falloc,
    /// <summary>Every byte written with zeroes.</summary>
    Full,
}
