// The input side shared by cmdlets that read existing images: -Path / -LiteralPath (PathInputCmdletBase) resolved to
// files, one engine call per file.

namespace VDisk.PowerShell.Commands;

/// <summary>Base of cmdlets that take existing images by -Path or -LiteralPath.</summary>
public abstract class ImageInputCmdletBase : PathInputCmdletBase
{
    /// <summary>
    /// Hands each image file to <see cref="ProcessImage"/>. Folders are skipped quietly when a wildcard matched them or
    /// when they came down the pipeline as items (Get-ChildItem output, bound by PSPath); a folder named explicitly is
    /// reported as not an image.
    /// </summary>
    protected override void ProcessRecord()
    {
        foreach (var (file, matched) in ResolveInputs())
        {
            if (matched && Directory.Exists(file))
            {
                WriteVerbose($"Skipping folder '{file}'.");
                continue;
            }
            ProcessImage(file);
        }
    }

    /// <summary>Does the cmdlet's work for one resolved image path (which may not exist or be a folder).</summary>
    protected abstract void ProcessImage(string fullPath);
}
