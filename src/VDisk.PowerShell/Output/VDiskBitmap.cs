// One persistent dirty bitmap of a qcow2 image, as Get-VDisk shows it (qemu-img info's format-specific "bitmaps").
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.PowerShell;

/// <summary>A persistent dirty bitmap stored in a qcow2 image.</summary>
public sealed class VDiskBitmap
{
    /// <summary>The bitmap's name.</summary>
    public string Name { get; init; } = string.Empty;

    /// <summary>Bytes of guest data one bit of the bitmap stands for.</summary>
    public long Granularity { get; init; }

    /// <summary>True when QEMU records writes in the bitmap (the auto flag).</summary>
    public bool Enabled { get; init; }

    /// <summary>True when the bitmap is marked in use: it may be stale (qemu-img info shows the in-use flag).</summary>
    public bool InUse { get; init; }

    /// <summary>True when the bitmap can be trusted to name every change since it was started.</summary>
    public bool Consistent { get; init; }

    /// <summary>Why the bitmap cannot be trusted, when it cannot.</summary>
    public string? Problem { get; init; }

    internal static VDiskBitmap From(Qcow2BitmapInfo info) => new()
    {
        Name = info.Name,
        Granularity = info.Granularity,
        Enabled = info.Enabled,
        InUse = info.InUse,
        Consistent = info.Consistent,
        Problem = info.Problem,
    };

    /// <inheritdoc/>
    public override string ToString() => Name;
}
