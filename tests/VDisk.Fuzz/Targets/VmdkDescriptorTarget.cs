// Target "vmdk-descriptor": the VMDK text descriptor (file or embedded): header keys, CIDs, extent lines and
// the disk database; then each extent's file name resolved against a descriptor folder (pure path logic, no
// file is opened), and the rewrite a writer makes (a new CID) parsed again, which must give the same
// descriptor: a writer must never produce a descriptor that it, or QEMU, cannot read back.
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;

namespace VDisk.Fuzz.Targets;

/// <summary>Parses the input as a VMDK descriptor, resolves its extent names and round-trips a CID change.</summary>
public sealed class VmdkDescriptorTarget : IFuzzTarget
{
    private const string DescriptorPath = "/fuzz/images/fuzz.vmdk";

    /// <inheritdoc/>
    public string Name => "vmdk-descriptor";

    /// <inheritdoc/>
    public FuzzOutcome Execute(byte[] input, AllocationMeter meter)
    {
        var descriptor = meter.Call("VmdkDescriptor.Parse", () => VmdkDescriptor.Parse(input, DescriptorPath));
        var extents = descriptor.Extents.ToList();
        var ddb = descriptor.Ddb.ToList();
        var (parentCid, createType, parent, version) = (descriptor.ParentCid, descriptor.CreateType, descriptor.ParentFileNameHint, descriptor.Version);
        foreach (var line in extents.Where(l => l.FileName != null))
        {
            try
            {
                meter.Call("ResolveExtentPath", () => VmdkOpener.ResolveExtentPath(DescriptorPath, line));
            }
            catch (VDiskException e) when (e.Kind is VDiskErrorKind.Corrupt or VDiskErrorKind.Unsupported)
            {
                // a name the opener refuses (outside the folder, the descriptor itself): the next line is still checked
            }
        }

        uint cid = descriptor.Cid == 0x12345678 ? 0x9abcdef0 : 0x12345678;
        string rewritten = meter.Call("WithCid", () => descriptor.WithCid(cid));
        VmdkDescriptor again;
        try
        {
            again = meter.Call("VmdkDescriptor.Parse (rewritten)", () => VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(rewritten), DescriptorPath));
        }
        catch (VDiskException e)
        {
            throw new FuzzFinding($"the descriptor rewritten with a new CID no longer parses: {e.Message}");
        }
        if (again.Cid != cid || again.ParentCid != parentCid || again.CreateType != createType || again.ParentFileNameHint != parent
            || again.Version != version || !again.Extents.SequenceEqual(extents) || !again.Ddb.SequenceEqual(ddb))
            throw new FuzzFinding("the descriptor rewritten with a new CID parses to a different descriptor.");
        return new FuzzOutcome(null, 0, 0, extents.Count + ddb.Count);
    }
}
