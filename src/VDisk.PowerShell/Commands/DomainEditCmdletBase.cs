// What the cmdlets that edit a VM's disks share (issue 10; libvirt formatdomain "Hard drives, floppy disks, CDROMs"):
// the domain named through libvirt (-Domain, -Uri) or as a domain XML file (-DomainXmlPath, backed up unless
// -NoBackup), and one way to apply an edit: the line diff for -WhatIf and -Confirm, saving the file or defining the
// domain through virsh, and for a running domain a warning that it applies at the next start, or -Restart now.
using System.Management.Automation;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of the cmdlets that edit the disks of libvirt domains or domain XML files.</summary>
public abstract class DomainEditCmdletBase : VDiskCmdletBase
{
    /// <summary>The domain (libvirt, through virsh).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Domain { get; set; }

    /// <summary>A domain XML file to edit instead of a libvirt domain.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? DomainXmlPath { get; set; }

    /// <summary>The libvirt connection (default: $env:LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Uri { get; set; }

    /// <summary>With -DomainXmlPath: no backup of the original file.</summary>
    [Parameter]
    public SwitchParameter NoBackup { get; set; }

    /// <summary>Restarts a running domain (ACPI shutdown, then start) so the change applies now.</summary>
    [Parameter]
    public SwitchParameter Restart { get; set; }

    /// <summary>With -Restart: powers the domain off (virsh destroy) when it has not shut down within -TimeoutSec.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>With -Restart: how long to wait for the guest to shut down (default 120 s; 0 with -Force powers off at once).</summary>
    [Parameter]
    [ValidateRange(0, 86400)]
    public int TimeoutSec { get; set; } = 120;

    /// <summary>Writes the changed attachments.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Checks that the domain is named one way only.</summary>
    protected override void BeginProcessing()
    {
        if (IsBound(nameof(Domain)) && IsBound(nameof(DomainXmlPath)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath, not both.", null));
    }

    /// <summary>The domain this record names: whether it is a file, and its full path or domain name; null after an error.</summary>
    protected (bool IsFile, string Name)? NamedDomain()
    {
        bool isFile = !string.IsNullOrEmpty(DomainXmlPath);
        string? name = isFile ? ResolveLiteralPath(DomainXmlPath!) : Domain;
        if (!string.IsNullOrEmpty(name)) return (isFile, name);
        if (!isFile) WriteError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath (or pipe Get-VDiskAttachment output).", null));
        return null;
    }

    /// <summary>The domain's XML as defined (libvirt) or as saved (file); null after an error.</summary>
    protected DomainXml? Load(bool isFile, string name, Virsh virsh) =>
        Attempt(name, () => isFile ? DomainFiles.Load(name) : DomainXml.Parse(virsh.DumpXml(name), $"domain {name}"));

    /// <summary>
    /// Applies <paramref name="edited"/> after ShouldProcess (which shows <paramref name="what"/> and the line diff):
    /// saves the file or defines the domain, then restarts a running domain with -Restart or warns that
    /// <paramref name="subject"/> applies at its next start. False when it was not applied.
    /// </summary>
    protected bool Apply(bool isFile, string name, Virsh virsh, DomainXml original, DomainXml edited, string what, string subject)
    {
        string where = isFile ? $"domain XML file {name}" : $"domain '{name}' ({virsh.Uri})";
        var diff = LineDiff.Compare(original.Text, edited.Text);
        string description = $"{what} of {where}" + (diff.Count == 0 ? " (already so: nothing changes)" : ":\n" + string.Join("\n", diff)) +
            (Restart && !isFile ? "\nand restart it if running" : "");
        if (!ShouldProcess(description, $"{what} of {where}?", MyInvocation.MyCommand.Name)) return false;
        if (diff.Count > 0)
        {
            if (isFile)
            {
                if (Attempt(name, () => Tuple.Create(DomainFiles.Save(name, edited, !NoBackup))) is not { } saved) return false;
                if (saved.Item1 is { } backup) WriteVerbose($"The original of {name} is kept as {backup}.");
            }
            else if (Attempt(name, () => { virsh.Define(edited.Text); return edited; }) is null) return false;
        }
        if (isFile || Attempt(name, () => (object)virsh.IsActive(name)) is not true) return true;
        if (Restart)
            return Attempt(name, () => RunCancellable(cancel => { virsh.Restart(name, TimeSpan.FromSeconds(TimeoutSec), Force, cancel); return edited; })) is not null;
        if (diff.Count > 0)
            WriteWarning($"Domain '{name}' is running: {subject} defined and applies at its next start (or now with -Restart).");
        return true;
    }
}
