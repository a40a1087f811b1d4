// Whether a file that starts like a VMDK text descriptor can be one (see FormatProbe). A descriptor file is
// short text: QEMU reads at most 1 MiB - 1 of it, and real ones are a few KiB. A raw disk whose guest wrote
// descriptor text into its first sector is neither: it is larger, or it holds binary data after the text.
// Such a file is read as raw, and the user is told how to choose the format, in the words qemu-img uses
// when it guesses raw ("Image format was not specified for ... and probing guessed raw").
// QEMU's rewrite of the CID (block/vmdk.c vmdk_write_cid, on the first write after every open) reads the whole
// descriptor buffer, prints the new CID as "%x" over the old one, appends the text from "parentCID" on, and
// writes the buffer back. When the new CID has fewer digits than the old one (about 1 time in 256 with random CIDs,
// always when the old one had leading zeros), the new text ends before the old text did, and the old text's last bytes
// stay after the new text's NUL: "...\n\0\n\0\0..." or "...\"\n\0" + "7\"\n" + "\0...". Those leftover bytes
// are the end of the old text, which is also the end of the new text (both end with the copied tail), so a
// descriptor may hold, after its NUL, pieces of text that repeat its own ending; anything else is not a descriptor.
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>Plausibility of a probed VMDK text descriptor.</summary>
internal static class ProbedDescriptor
{
    /// <summary>
    /// Why the file cannot be a descriptor file, or null when it can: a descriptor is at most 1 MiB - 1 bytes of text
    /// (no control bytes but \t \n \v \f \r), optionally padded with NUL bytes to its end (QEMU pads the descriptor
    /// when it rewrites the CID), where the padding may hold what a rewrite that shortened the text left of the old
    /// text: NUL-separated pieces that each repeat the end of the text (see <see cref="IsRewriteLeftover"/>).
    /// </summary>
    public static string? Implausibility(IStorage storage, long length)
    {
        if (length > VmdkDescriptor.MaxBytes)
            return $"the file is {length} bytes, larger than a descriptor file can be ({VmdkDescriptor.MaxBytes} bytes)";
        var bytes = new byte[length];
        storage.ReadAt(0, bytes);
        int end = Array.IndexOf(bytes, (byte)0);
        var text = end < 0 ? bytes.AsSpan() : bytes.AsSpan(0, end);
        int control = text.IndexOfAnyInRange((byte)0x01, (byte)0x08);
        if (control < 0) control = text.IndexOfAnyInRange((byte)0x0e, (byte)0x1f);
        if (control >= 0)
            return $"the file holds binary data (byte 0x{text[control]:x2} at offset {control}), which a descriptor cannot";
        int afterPadding = end < 0 ? -1 : FirstForeignByte(text, bytes.AsSpan(end));
        return afterPadding < 0 ? null
            : $"the file holds data after the descriptor text and its NUL padding (at offset {end + afterPadding}), which a descriptor file cannot";
    }

    /// <summary>
    /// Offset in <paramref name="padding"/> (which starts at the text's NUL) of the first byte that is neither a NUL nor
    /// part of a leftover of an earlier, longer text; -1 when there is none.
    /// </summary>
    private static int FirstForeignByte(ReadOnlySpan<byte> text, ReadOnlySpan<byte> padding)
    {
        int p = 0;
        while (true)
        {
            int start = padding[p..].IndexOfAnyExcept((byte)0);
            if (start < 0) return -1;
            start += p;
            int length = padding[start..].IndexOf((byte)0);
            if (length < 0) length = padding.Length - start;
            if (!IsRewriteLeftover(text, padding.Slice(start, length))) return start;
            p = start + length;
        }
    }

    /// <summary>
    /// True when <paramref name="piece"/> (bytes between NULs after the text) can be what QEMU's CID rewrite left of an
    /// earlier, longer text: that text ended as this one does, so the piece repeats the end of <paramref name="text"/>.
    /// </summary>
    internal static bool IsRewriteLeftover(ReadOnlySpan<byte> text, ReadOnlySpan<byte> piece)
        => piece.Length < text.Length && text.EndsWith(piece);

    /// <summary>The warning for a descriptor-like file read as raw.</summary>
    public static string GuessedRawWarning(string path, string why) =>
        $"Image format was not specified for '{path}' and probing guessed raw: its first sector reads like a VMDK descriptor, " +
        $"but {why}. A guest can write such text into its own disk, so VDisk does not follow it. " +
        "Specify the format to remove this warning: raw for a raw disk, or vmdk only if the file really is a descriptor you trust " +
        "(-SourceFormat for Convert-VDisk, -Format for Get-VDisk and Get-VDiskChain, -FirstFormat/-SecondFormat for Compare-VDisk, -BackingFormat for New-VDisk).";
}
