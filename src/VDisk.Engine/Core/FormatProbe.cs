// Format recognition by magic bytes, never by file extension (DESIGN.md "Core": probe).
using System.Buffers.Binary;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>Recognises an image format from its first bytes.</summary>
public static class FormatProbe
{
    private const uint Qcow2Magic = 0x514649fb;      // "QFI\xfb", big-endian
    private const uint VmdkSparseMagic = 0x564d444b; // "KDMV", little-endian "VMDK"
    private const uint VdiSignature = 0xbeda107f;    // little-endian at 0x40
    private const int VdiSignatureOffset = 0x40;
    private static readonly byte[] VmdkDescriptorStart = "# Disk DescriptorFile"u8.ToArray();

    /// <summary>The format whose magic the storage starts with; raw when none matches.</summary>
    public static ImageFormat Detect(IStorage storage)
    {
        Span<byte> head = stackalloc byte[512];
        storage.ReadAt(0, head);
        if (BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Magic) return ImageFormat.Qcow2;
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) == VmdkSparseMagic) return ImageFormat.Vmdk;
        if (head.StartsWith(VmdkDescriptorStart)) return ImageFormat.Vmdk;
        if (BinaryPrimitives.ReadUInt32LittleEndian(head[VdiSignatureOffset..]) == VdiSignature) return ImageFormat.Vdi;
        return ImageFormat.Raw;
    }

    /// <summary>Parses a format name as qemu-img spells it ("raw", "qcow2", "vmdk", "vdi").</summary>
    public static ImageFormat? ParseName(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        "raw" => ImageFormat.Raw,
        "qcow2" => ImageFormat.Qcow2,
        "vmdk" => ImageFormat.Vmdk,
        "vdi" => ImageFormat.Vdi,
        _ => null,
    };

    /// <summary>The name qemu-img uses for a format.</summary>
    public static string Name(ImageFormat format) => format.ToString().ToLowerInvariant();
}
