// Opening a VMDK image (VMware Virtual Disk Format 1.1, "Layout Basics", "The Descriptor File", "Hosted
// Sparse Extents"; QEMU block/vmdk.c vmdk_open, vmdk_open_vmdk4, vmdk_parse_extents): either one sparse
// file with an embedded descriptor (monolithicSparse, streamOptimized) or a descriptor file whose extent
// lines name flat and sparse extent files in its folder. Everything is checked before tables are read.
// Extent names go through StoredFileNames; an extent must be a regular file or block device (HostFileKind);
// a probed descriptor (format not declared) may only name files in its own folder.
using System.Buffers.Binary;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>What opening found: the descriptor, where it lives, and the extents in guest order.</summary>
/// <param name="Descriptor">The parsed descriptor.</param>
/// <param name="DescriptorOffset">Byte offset of the descriptor in the main file (0 for a descriptor file).</param>
/// <param name="DescriptorCapacity">Bytes reserved for an embedded descriptor; null for a descriptor file.</param>
/// <param name="CreateType">The subformat as QEMU reports it.</param>
/// <param name="Extents">Extents in guest order.</param>
/// <param name="ExtentFiles">Extent files other than the main file, each once.</param>
internal sealed record VmdkLayout(VmdkDescriptor Descriptor, long DescriptorOffset, long? DescriptorCapacity, string CreateType,
    List<VmdkExtent> Extents, List<IStorage> ExtentFiles);

/// <summary>Reads the structure of a VMDK image.</summary>
internal static class VmdkOpener
{
    /// <summary>Grain tables cached per image (2 KiB each), shared out among its sparse extents.</summary>
    public const int TableCacheEntries = 4096;
    private const int Sector = VmdkSparseHeader.SectorSize;
    private static readonly string[] DescriptorFileTypes =
        { "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "vmfs", "vmfsSparse" };

    /// <summary>
    /// Opens the image whose main file is <paramref name="storage"/>; <paramref name="openFile"/> opens an extent file
    /// by full path. On failure every extent file opened here is closed again (the caller owns <paramref name="storage"/>).
    /// With <paramref name="confineToFolder"/> (a probed descriptor) every extent file must lie in the descriptor's folder.
    /// </summary>
    public static VmdkLayout Open(IStorage storage, bool writable, Func<string, bool, IStorage> openFile, bool confineToFolder = false)
    {
        string path = storage.Name;
        long length = storage.Length;
        var first = new byte[Sector];
        storage.ReadAt(0, first);
        if (length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(first) == VmdkSparseHeader.Magic)
            return OpenMonolithic(storage, first, length, writable);
        if (length >= 4 && first.AsSpan().StartsWith("COWD"u8))
            throw VDiskException.Unsupported(path, "VMware 3 (COWD) sparse VMDK files are not supported.");
        if (!LooksLikeDescriptor(first))
            throw new VDiskException(VDiskErrorKind.NotAnImage, path, $"{path} is not a VMDK image: it has neither the \"KDMV\" magic nor a text descriptor.");
        if (length > VmdkDescriptor.MaxBytes)
            throw VDiskException.Corrupt(path, $"the VMDK descriptor file is {length} bytes; at most {VmdkDescriptor.MaxBytes} are supported.");
        var text = new byte[length];
        storage.ReadAt(0, text);
        return OpenDescriptorFile(storage, VmdkDescriptor.Parse(text, path), writable, openFile, confineToFolder);
    }

    private static VmdkLayout OpenMonolithic(IStorage storage, byte[] first, long length, bool writable)
    {
        string path = storage.Name;
        if (length < Sector)
            throw VDiskException.Corrupt(path, $"the sparse extent header is truncated (the file has {length} of {Sector} bytes).");
        var header = VmdkSparseHeader.Parse(first, path);
        header.Validate(path, length);
        if (header.DescriptorOffset == 0)
            throw VDiskException.Corrupt(path, "the sparse file has no embedded descriptor (if it is one extent of a split image, open the image's descriptor file instead).");
        if (header.Capacity == 0)
            throw VDiskException.Unsupported(path, "sparse files holding only a descriptor (capacity 0) are not supported.");
        var text = new byte[header.DescriptorSize * Sector];
        storage.ReadAt(header.DescriptorOffset * Sector, text);
        var descriptor = VmdkDescriptor.Parse(text, path);
        var extent = OpenSparse(storage, header, 0, null, writable, TableCacheEntries);
        string createType = extent.Header.IsCompressed ? "streamOptimized" : "monolithicSparse";
        return new VmdkLayout(descriptor, header.DescriptorOffset * Sector, text.Length, createType, new List<VmdkExtent> { extent }, new List<IStorage>());
    }

    private static VmdkLayout OpenDescriptorFile(IStorage storage, VmdkDescriptor descriptor, bool writable, Func<string, bool, IStorage> openFile,
        bool confineToFolder)
    {
        string path = storage.Name;
        if (descriptor.CreateType is not { } createType)
            throw VDiskException.Corrupt(path, "the VMDK descriptor has no createType.");
        if (!DescriptorFileTypes.Contains(createType))
            throw VDiskException.Unsupported(path, $"VMDK createType \"{createType}\" is not supported in a descriptor file (supported: {string.Join(", ", DescriptorFileTypes)}).");
        if (descriptor.Extents.Count == 0)
            throw VDiskException.Corrupt(path, "the VMDK descriptor lists no extents.");
        var files = new Dictionary<string, IStorage>(OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        var extents = new List<VmdkExtent>();
        try
        {
            int sparseCount = descriptor.Extents.Count(e => e.Type is "SPARSE" or "VMFSSPARSE");
            int cachePerExtent = TableCacheEntries / Math.Max(1, sparseCount);
            long guest = 0;
            foreach (var line in descriptor.Extents)
            {
                extents.Add(OpenExtent(path, line, guest, writable, cachePerExtent, files, openFile, confineToFolder));
                guest += line.Sectors * Sector;
            }
            CheckGrainLayout(path, extents);
            return new VmdkLayout(descriptor, 0, null, createType, extents, files.Values.ToList());
        }
        catch
        {
            foreach (var e in extents) e.Dispose();
            foreach (var f in files.Values) f.Dispose();
            throw;
        }
    }

    private static VmdkExtent OpenExtent(string path, VmdkExtentLine line, long guestStart, bool writable, int cache,
        Dictionary<string, IStorage> files, Func<string, bool, IStorage> openFile, bool confineToFolder)
    {
        string where = $"extent on descriptor line {line.LineNumber}";
        if (line.Access == "NOACCESS")
            throw VDiskException.Unsupported(path, $"the {where} is marked NOACCESS.");
        if (line.Access == "RDONLY" && writable)
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: the {where} is marked RDONLY; the image can only be opened read-only.");
        bool flat = line.Type is "FLAT" or "VMFS";
        if (!flat && line.Type is not ("SPARSE" or "VMFSSPARSE"))
            throw VDiskException.Unsupported(path, $"the {where} has type {line.Type}; only FLAT, VMFS, SPARSE and VMFSSPARSE extents are supported.");
        string full = ResolveExtentPath(path, line);
        if (confineToFolder && !StoredFileNames.IsInFolderOf(path, full))
            throw VDiskException.Unsupported(path, $"the extent file '{StoredFileNames.Printable(full)}' on descriptor line {line.LineNumber} is outside its folder. " +
                ImageChain.ProbedOutsideFolderAdvice);
        if (!files.TryGetValue(full, out var file))
        {
            if (!HostFileKind.Exists(full))
                throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: extent file '{StoredFileNames.Printable(full)}' (descriptor line {line.LineNumber}) not found.");
            HostFileKind.EnsureReadable(full, $"the extent file on line {line.LineNumber} of '{path}'");
            file = openFile(full, writable);
            files[full] = file;
        }
        if (flat) return new VmdkFlatExtent(file, guestStart, line.Sectors * Sector, line.FlatOffset * Sector);

        var first = new byte[Sector];
        file.ReadAt(0, first);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(first);
        if (magic == 0x44574f43) // "COWD", little-endian
            throw VDiskException.Unsupported(full, "VMFS sparse (COWD, VMware 3) extents are not supported.");
        if (file.Length < Sector)
            throw VDiskException.Corrupt(full, $"the sparse extent header is truncated (the file has {file.Length} of {Sector} bytes).");
        var header = VmdkSparseHeader.Parse(first, full);
        header.Validate(full, file.Length);
        return OpenSparse(file, header, guestStart, line, writable, cache);
    }

    /// <summary>Opens a sparse extent whose header passed validation, reading the footer when the directory is at the end.</summary>
    private static VmdkSparseExtent OpenSparse(IStorage file, VmdkSparseHeader header, long guestStart, VmdkExtentLine? line, bool writable, int cache)
    {
        string name = file.Name;
        var inForce = header.GdIsAtEnd ? ReadFooter(file, header) : header;
        if (line != null && inForce.Capacity != line.Sectors)
            throw VDiskException.Corrupt(name, $"the sparse extent's capacity is {inForce.Capacity} sectors but descriptor line {line.LineNumber} says {line.Sectors}.");
        if (writable)
        {
            if (inForce.Version == 3 && !inForce.IsCompressed)
                throw VDiskException.Unsupported(name, "version 3 sparse extents (with changed block tracking) can only be opened read-only.");
            if (inForce.IsCompressed && (line != null || !header.GdIsAtEnd || !inForce.HasMarkers))
                throw VDiskException.Unsupported(name, "this compressed extent layout (grain directory at the start as qemu-img writes it, no markers, or listed in a descriptor file) can be read but not written.");
        }
        var extent = new VmdkSparseExtent(file, guestStart, inForce, writable, cache);
        if (extent.Stream != null && extent.HasGrains)
        {
            extent.Dispose();
            throw VDiskException.Unsupported(name, "streamOptimized images are write-once: this one already holds data, so it can only be opened read-only.");
        }
        return extent;
    }

    // The footer of a stream-optimized extent: a footer marker, the header with the real gdOffset, an end-of-stream marker.
    private static VmdkSparseHeader ReadFooter(IStorage file, VmdkSparseHeader header)
    {
        string name = file.Name;
        long end = (file.Length + Sector - 1) / Sector * Sector;
        if (end < (header.Overhead + 3) * Sector)
            throw VDiskException.Corrupt(name, "the stream-optimized extent is truncated: it has no room for its footer.");
        var tail = new byte[3 * Sector];
        file.ReadAt(end - tail.Length, tail);
        var (_, footerSize, footerType) = VmdkMarkers.ReadMetadata(tail);
        var (eosValue, eosSize, eosType) = VmdkMarkers.ReadMetadata(tail.AsSpan(2 * Sector));
        if (footerSize != 0 || footerType != VmdkMarkers.Footer || eosValue != 0 || eosSize != 0 || eosType != VmdkMarkers.EndOfStream)
            throw VDiskException.Corrupt(name, "the stream-optimized extent has no valid footer and end-of-stream marker in its last three sectors (the file is truncated or was not finished).");
        var footer = VmdkSparseHeader.Parse(tail.AsSpan(Sector, Sector), name);
        footer.Validate(name, file.Length, isFooter: true);
        if (footer.Capacity != header.Capacity || footer.GrainSize != header.GrainSize)
            throw VDiskException.Corrupt(name, $"the footer (capacity {footer.Capacity}, grainSize {footer.GrainSize}) disagrees with the header (capacity {header.Capacity}, grainSize {header.GrainSize}).");
        return footer;
    }

    // All sparse extents share one grain size, and extents meet on grain boundaries, so runs change kind only there.
    private static void CheckGrainLayout(string path, List<VmdkExtent> extents)
    {
        var grains = extents.OfType<VmdkSparseExtent>().Select(e => e.Header.GrainBytes).Distinct().ToList();
        if (grains.Count > 1)
            throw VDiskException.Unsupported(path, $"the sparse extents use different grain sizes ({string.Join(", ", grains)} bytes).");
        if (grains.Count == 0) return;
        for (int i = 0; i < extents.Count - 1; i++)
        {
            long end = extents[i].GuestStart + extents[i].Length;
            if (end % grains[0] != 0)
                throw VDiskException.Unsupported(path, $"extent {i + 1} ends at guest offset {end}, which is not a multiple of the grain size ({grains[0]} bytes).");
        }
    }

    /// <summary>The full path of an extent file: absolute names as given, relative ones inside the descriptor's folder.</summary>
    internal static string ResolveExtentPath(string descriptorPath, VmdkExtentLine line)
    {
        string name = line.FileName
            ?? throw VDiskException.Corrupt(descriptorPath, $"the extent on descriptor line {line.LineNumber} has no file name.");
        StoredFileNames.CheckWellFormed(descriptorPath, name, $"extent file name on descriptor line {line.LineNumber}");
        string descriptorFull = Path.GetFullPath(descriptorPath);
        string full;
        if (Path.IsPathRooted(name))
        {
            full = Path.GetFullPath(name);
        }
        else
        {
            string folder = Path.GetDirectoryName(descriptorFull) ?? ".";
            full = Path.GetFullPath(Path.Combine(folder, name));
            string relative = Path.GetRelativePath(folder, full);
            if (relative == ".." || relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) || Path.IsPathRooted(relative))
                throw VDiskException.Unsupported(descriptorPath, $"extent file name '{StoredFileNames.Printable(name)}' on descriptor line {line.LineNumber} leaves the descriptor's folder; only names inside it (or absolute paths) are accepted.");
        }
        if (string.Equals(full, descriptorFull, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            throw VDiskException.Corrupt(descriptorPath, $"the extent on descriptor line {line.LineNumber} names the descriptor file itself.");
        return full;
    }

    // QEMU's probe: comment and blank lines, then "version=1|2|3".
    private static bool LooksLikeDescriptor(ReadOnlySpan<byte> head)
    {
        var text = System.Text.Encoding.UTF8.GetString(head);
        foreach (var raw in text.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            return line.StartsWith("version=", StringComparison.Ordinal);
        }
        return false;
    }
}
