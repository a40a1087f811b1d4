// Format recognition by magic bytes, never by file extension (DESIGN.md "Core": probe). A VMDK text
// descriptor has no magic: it is recognised as QEMU's block/vmdk.c vmdk_probe does (comment lines and lines
// of spaces, then "version=1|2|3" ending its line, within the first 512 bytes). Text that a guest wrote into
// the first sector of its raw disk passes that test too, so a probed descriptor must also look like a
// descriptor file as a whole (ProbedDescriptor.cs): otherwise the file is read as raw, with a warning in the
// style of qemu-img's "probing guessed raw".
using System.Buffers.Binary;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>What probing found.</summary>
/// <param name="Format">The format the file is opened as.</param>
/// <param name="IsTextDescriptor">True when the file was recognised as a VMDK text descriptor (a probed descriptor).</param>
/// <param name="Warning">Why the guess deserves the user's attention, or null.</param>
public sealed record ProbeResult(ImageFormat Format, bool IsTextDescriptor, string? Warning);

/// <summary>Recognises an image format from its first bytes.</summary>
public static class FormatProbe
{
    /// <summary>Bytes probing looks at (QEMU's BLOCK_PROBE_BUF_SIZE).</summary>
    public const int ProbeBytes = 512;
    private const uint Qcow2Magic = 0x514649fb;      // "QFI\xfb", big-endian
    private const uint VmdkSparseMagic = 0x564d444b; // "KDMV", little-endian "VMDK"
    private const uint VmdkCowdMagic = 0x434f5744;   // "COWD", big-endian: VMware 3 sparse files (refused when opened)
    private const uint VdiSignature = 0xbeda107f;    // little-endian at 0x40
    private const int VdiSignatureOffset = 0x40;

    /// <summary>
    /// Probes <paramref name="storage"/>: the format by magic, a VMDK text descriptor by QEMU's rule, raw otherwise.
    /// A descriptor found in a file that cannot be one (larger than a descriptor may be, or holding binary data)
    /// is reported as raw with a warning that says how to choose the format explicitly.
    /// </summary>
    public static ProbeResult Probe(IStorage storage)
    {
        Span<byte> head = stackalloc byte[ProbeBytes];
        long length = storage.Length;
        storage.ReadAt(0, head);
        head = head[..(int)Math.Min(ProbeBytes, length)];
        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Magic) return new(ImageFormat.Qcow2, false, null);
        if (head.Length >= 4 && (BinaryPrimitives.ReadUInt32LittleEndian(head) == VmdkSparseMagic || BinaryPrimitives.ReadUInt32BigEndian(head) == VmdkCowdMagic))
            return new(ImageFormat.Vmdk, false, null);
        if (head.Length >= VdiSignatureOffset + 4 && BinaryPrimitives.ReadUInt32LittleEndian(head[VdiSignatureOffset..]) == VdiSignature)
            return new(ImageFormat.Vdi, false, null);
        if (!StartsLikeDescriptor(head)) return new(ImageFormat.Raw, false, null);
        return ProbedDescriptor.Implausibility(storage, length) is { } why
            ? new(ImageFormat.Raw, false, ProbedDescriptor.GuessedRawWarning(storage.Name, why))
            : new(ImageFormat.Vmdk, true, null);
    }

    /// <summary>
    /// QEMU's vmdk_probe for text: lines starting with '#' are skipped, a line of spaces (optionally ending in \r)
    /// is skipped, and the first other line must be exactly "version=1", "version=2" or "version=3" (\n or \r\n).
    /// </summary>
    public static bool StartsLikeDescriptor(ReadOnlySpan<byte> head)
    {
        int p = 0;
        while (p < head.Length)
        {
            if (head[p] == '#')
            {
                int newline = head[p..].IndexOf((byte)'\n');
                if (newline < 0) return false;
                p += newline + 1;
                continue;
            }
            if (head[p] == ' ')
            {
                while (p < head.Length && head[p] == ' ') p++;
                if (p < head.Length && head[p] == '\r') p++;
                if (p == head.Length || head[p] != '\n') return false;
                p++;
                continue;
            }
            var rest = head[p..];
            return rest.Length >= 10 && rest.StartsWith("version="u8) && rest[8] is (byte)'1' or (byte)'2' or (byte)'3'
                && (rest[9] == '\n' || (rest.Length >= 11 && rest[9] == '\r' && rest[10] == '\n'));
        }
        return false;
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
