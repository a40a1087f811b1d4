// qcow2 header extensions (qcow2.rst "Header extensions"): type/length/data records after the header,
// padded to 8 bytes. Extensions we do not interpret are kept byte for byte and written back.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>One header extension: a type and its raw data.</summary>
/// <param name="Type">Extension type (0 ends the list).</param>
/// <param name="Data">The extension's bytes, without padding.</param>
public sealed record Qcow2HeaderExtension(uint Type, byte[] Data)
{
    public const uint EndType = 0x00000000;
    public const uint BackingFormatType = 0xe2792aca;
    public const uint FeatureNameTableType = 0x6803f857;
    public const uint BitmapsType = 0x23852875;
    public const uint FullDiskEncryptionType = 0x0537be77;
    public const uint ExternalDataFileType = 0x44415441;
    private const int FeatureNameEntryLength = 48;

    /// <summary>The data as a string (backing format, data file name).</summary>
    public string Text => Encoding.UTF8.GetString(Data).TrimEnd('\0');

    /// <summary>An extension holding a string.</summary>
    public static Qcow2HeaderExtension FromText(uint type, string text) => new(type, Encoding.UTF8.GetBytes(text));

    /// <summary>The feature name table extension describing <see cref="Qcow2Features.NameTable"/>.</summary>
    public static Qcow2HeaderExtension FeatureNameTable()
    {
        var data = new byte[Qcow2Features.NameTable.Length * FeatureNameEntryLength];
        for (int i = 0; i < Qcow2Features.NameTable.Length; i++)
        {
            var (type, bit, name) = Qcow2Features.NameTable[i];
            var entry = data.AsSpan(i * FeatureNameEntryLength, FeatureNameEntryLength);
            entry[0] = type;
            entry[1] = bit;
            Encoding.ASCII.GetBytes(name, entry[2..]);
        }
        return new(FeatureNameTableType, data);
    }

    /// <summary>The (type, bit) → name pairs of a feature name table extension.</summary>
    public Dictionary<(byte, byte), string> FeatureNames()
    {
        var names = new Dictionary<(byte, byte), string>();
        for (int i = 0; i + FeatureNameEntryLength <= Data.Length; i += FeatureNameEntryLength)
            names[(Data[i], Data[i + 1])] = Encoding.ASCII.GetString(Data, i + 2, FeatureNameEntryLength - 2).TrimEnd('\0');
        return names;
    }

    /// <summary>Reads the extensions between <paramref name="start"/> and the end of <paramref name="area"/>.</summary>
    public static void ParseAll(ReadOnlySpan<byte> area, int start, List<Qcow2HeaderExtension> into, string path)
    {
        int pos = start;
        while (pos + 8 <= area.Length)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(area[pos..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(area[(pos + 4)..]);
            if (type == EndType) return;
            if (length > (uint)(area.Length - pos - 8))
                throw VDiskException.Corrupt(path, $"qcow2 header extension 0x{type:x8} at offset {pos} has length {length}, past the end of the header area.");
            into.Add(new Qcow2HeaderExtension(type, area.Slice(pos + 8, (int)length).ToArray()));
            pos += 8 + Align8((int)length);
        }
    }

    /// <summary>Bytes the extensions and the end marker take.</summary>
    public static int SpaceNeeded(IEnumerable<Qcow2HeaderExtension> extensions) => extensions.Sum(e => 8 + Align8(e.Data.Length)) + 8;

    /// <summary>Writes the extensions and the end marker at <paramref name="pos"/>; returns the offset after them.</summary>
    public static int WriteAll(Span<byte> area, int pos, IEnumerable<Qcow2HeaderExtension> extensions)
    {
        foreach (var e in extensions)
        {
            int needed = 8 + Align8(e.Data.Length);
            if (pos + needed + 8 > area.Length)
                throw new InvalidOperationException("qcow2 header extensions do not fit in the first cluster.");
            BinaryPrimitives.WriteUInt32BigEndian(area[pos..], e.Type);
            BinaryPrimitives.WriteUInt32BigEndian(area[(pos + 4)..], (uint)e.Data.Length);
            e.Data.CopyTo(area[(pos + 8)..]);
            pos += needed;
        }
        area.Slice(pos, 8).Clear(); // end of extensions
        return pos + 8;
    }

    private static int Align8(int n) => (n + 7) & ~7;
}
