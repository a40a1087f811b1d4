// Format variants chosen at create time (qemu-img create -o subformat=... for vmdk, -o static=on for vdi).
namespace VDisk.Engine.Core;

/// <summary>The variant of a format to create.</summary>
public enum ImageSubformat
{
    /// <summary>The format's usual variant (vmdk monolithicSparse, vdi dynamic).</summary>
    Default,
    /// <summary>VMDK: one sparse extent file with an embedded descriptor.</summary>
    MonolithicSparse,
    /// <summary>VMDK: a descriptor file plus one flat (raw) extent file.</summary>
    MonolithicFlat,
    /// <summary>VMDK: a descriptor file plus sparse extents of at most 2 GiB each.</summary>
    TwoGbMaxExtentSparse,
    /// <summary>VMDK: a descriptor file plus flat extents of at most 2 GiB each.</summary>
    TwoGbMaxExtentFlat,
    /// <summary>VMDK: compressed grains with markers, for streaming (ESXi / OVA import). Written sequentially.</summary>
    StreamOptimized,
    /// <summary>VDI: blocks allocated on first write.</summary>
    Dynamic,
    /// <summary>VDI: every block allocated at create (qemu-img's static=on).</summary>
    Static,
}
