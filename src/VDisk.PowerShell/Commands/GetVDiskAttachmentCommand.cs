// Get-VDiskAttachment: how VMs' disks are attached (issue 10), read from libvirt (virsh list --all --name, then
// dumpxml --inactive: the definition the next start uses) or from domain XML files; one VDiskAttachment per disk.
using System.Management.Automation;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Lists the disk attachments of libvirt domains or domain XML files.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskAttachment", DefaultParameterSetName = DomainSet)]
[OutputType(typeof(VDiskAttachment))]
public sealed class GetVDiskAttachmentCommand : VDiskCmdletBase
{
    private const string DomainSet = "Domain";
    private const string FileSet = "DomainXmlPath";

    /// <summary>Domain names; wildcards match the defined and running domains. Default: every domain.</summary>
    [Parameter(ParameterSetName = DomainSet, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    public string[] Domain { get; set; } = { "*" };

    /// <summary>Domain XML files (wildcards expanded).</summary>
    [Parameter(ParameterSetName = FileSet, Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [Alias("FullName")]
    public string[] DomainXmlPath { get; set; } = Array.Empty<string>();

    /// <summary>Only these targets (vda, sd*); wildcards allowed.</summary>
    [Parameter]
    [SupportsWildcards]
    public string[]? Target { get; set; }

    /// <summary>The libvirt connection (default: $env:LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter(ParameterSetName = DomainSet)]
    public string? Uri { get; set; }

    /// <summary>Reads each domain or file and writes its disks.</summary>
    protected override void ProcessRecord()
    {
        if (ParameterSetName == FileSet)
        {
            foreach (string pattern in DomainXmlPath)
                foreach (string path in ResolveWildcardPath(pattern))
                    if (Attempt(path, () => DomainFiles.Load(path)) is { } domain) Write(domain, path, null);
            return;
        }
        var virsh = new Virsh(Uri);
        foreach (string domainName in ExpandDomainNames(virsh, Domain))
            if (Attempt(domainName, () => DomainXml.Parse(virsh.DumpXml(domainName), $"domain {domainName}")) is { } domain) Write(domain, null, virsh.Uri);
    }

    private void Write(DomainXml domain, string? path, string? uri)
    {
        var patterns = Target?.Select(t => new WildcardPattern(t)).ToList();
        foreach (var disk in domain.Disks)
            if (patterns is null || patterns.Any(p => p.IsMatch(disk.Target))) WriteObject(VDiskAttachment.From(disk, path, uri));
    }
}
